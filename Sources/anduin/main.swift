print("anduin")
