import AnduinCore
