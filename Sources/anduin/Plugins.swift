import AnduinCore
import filter_grep
import filter_kubernetes
import filter_modify
import filter_multiline
import filter_parse
import filter_throttle
import in_tail
import out_blackhole
import out_es
import out_http
import out_file
import out_stdout

/// Every plugin compiled into the agent. Adding one: its folder under plugins/, its name in
/// Package.swift, and its spec here.
let allPlugins = PluginRegistry([
    TailPlugin.spec,
    ParsePlugin.spec,
    KubernetesPlugin.spec,
    MultilinePlugin.spec,
    GrepPlugin.spec,
    ModifyPlugin.spec,
    ThrottlePlugin.spec,
    FileOutputPlugin.spec,
    StdoutOutputPlugin.spec,
    BlackholePlugin.spec,
    HTTPOutputPlugin.spec,
    ElasticsearchPlugin.spec,
])
