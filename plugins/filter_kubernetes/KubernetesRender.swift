import AnduinCore

/// Renders the `"kubernetes":{...}` member once per source file and pod version; every record of a
/// batch then shares the bytes through `RecordBatch.sharedFields`.
public enum KubernetesRender {
    public struct Options: Sendable {
        public var annotations: Bool
        public var namespaceLabels: Bool
        public init(annotations: Bool = false, namespaceLabels: Bool = false) {
            self.annotations = annotations
            self.namespaceLabels = namespaceLabels
        }
    }

    /// Field names follow Fluent Bit's (dashboards depend on them). Fields that are unknown are left
    /// out rather than written empty.
    public static func render(path: KubernetesPathInfo, pod: PodMeta?, namespaceLabels: [(String, String)]?,
                              options: Options) -> [UInt8] {
        var w = JSONWriter(capacity: 512)
        w.writeRaw(#""kubernetes":{"namespace_name":"#)
        w.writeString(path.namespace)
        w.writeRaw(#","pod_name":"#)
        w.writeString(path.podName)
        // The API's uid, not the path's: for a static pod the folder holds the config hash.
        if let uid = pod?.uid ?? path.podUID {
            w.writeRaw(#","pod_id":"#)
            w.writeString(uid)
        }
        w.writeRaw(#","container_name":"#)
        w.writeString(path.containerName)
        let container = pod?.containers[path.containerName]
        if let id = path.containerID ?? container?.id {
            w.writeRaw(#","container_id":"#)
            w.writeString(id)
        }
        if let image = container?.image {
            w.writeRaw(#","container_image":"#)
            w.writeString(image)
        }
        if let host = pod?.nodeName {
            w.writeRaw(#","host":"#)
            w.writeString(host)
        }
        if let pod {
            if !pod.labels.isEmpty {
                w.writeRaw(#","labels":"#)
                writeObject(pod.labels, &w)
            }
            if options.annotations && !pod.annotations.isEmpty {
                w.writeRaw(#","annotations":"#)
                writeObject(pod.annotations, &w)
            }
            if let owner = pod.owner {
                w.writeRaw(#","owner":{"kind":"#)
                w.writeString(owner.kind)
                w.writeRaw(#","name":"#)
                w.writeString(owner.name)
                w.writeByte(UInt8(ascii: "}"))
            }
        }
        if options.namespaceLabels, let namespaceLabels, !namespaceLabels.isEmpty {
            w.writeRaw(#","namespace_labels":"#)
            writeObject(namespaceLabels, &w)
        }
        w.writeByte(UInt8(ascii: "}"))
        return w.bytes
    }

    /// Keys are written as they are (`app.kubernetes.io/name` stays one key, not a nested path).
    static func writeObject(_ pairs: [(String, String)], _ w: inout JSONWriter) {
        w.writeByte(UInt8(ascii: "{"))
        for (i, (k, v)) in pairs.enumerated() {
            if i > 0 { w.writeByte(UInt8(ascii: ",")) }
            w.writeString(k)
            w.writeByte(UInt8(ascii: ":"))
            w.writeString(v)
        }
        w.writeByte(UInt8(ascii: "}"))
    }
}
