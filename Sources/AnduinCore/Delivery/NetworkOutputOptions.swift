/// The options of every network output, in one table of the reference.
public let networkOutputOptions = OptionSection(name: "network-outputs", options: DeliveryOptions.table.options + HTTPOutputOptions.table.options + [DocumentMetadata.group.spec])
