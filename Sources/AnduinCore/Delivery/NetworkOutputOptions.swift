/// The options of every network output, in one table of the reference.
public let networkOutputOptions = OptionSection(name: "network-outputs", options: DeliveryOptions.table.options + HTTPOutputOptions.table.options)

/// The delivery options of the outputs that write themselves (`file`, `stdout`, `blackhole`): the
/// network outputs' buffer, batching, retries and dead letters, one request at a time.
public let localOutputOptions = OptionSection(name: "local-outputs", options: DeliveryOptions.localTable.options)
