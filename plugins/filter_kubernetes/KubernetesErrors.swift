import AnduinCore

/// Why a request to the Kubernetes API did not give usable data. Messages name the URL (redacted)
/// and what to check; tokens never appear.
public enum KubernetesAPIError: Error, CustomStringConvertible, Sendable {
    /// No response: connect, TLS, timeout, transport.
    case transport(HTTPClientError)
    /// 401/403: the credentials are wrong, expired, or lack RBAC rights.
    case unauthorized(url: String, status: Int, message: String)
    /// The resourceVersion is too old (HTTP 410 or an ERROR event with code 410): list again.
    case gone(url: String)
    /// Any other non-2xx answer or ERROR event.
    case status(url: String, status: Int, message: String)
    /// The body was not what the API returns.
    case badResponse(what: String, detail: String)
    /// The service account token could not be read.
    case token(path: String, detail: String)

    public var description: String {
        switch self {
        case .transport(let e):
            return e.description
        case .unauthorized(let url, let status, let message):
            let why = status == 401 ? "the token was refused (expired or wrong token file?)"
                : "forbidden: the service account needs get/list/watch on pods (and namespaces with namespace_labels)"
            return "Kubernetes API \(url) answered \(status): \(why)" + (message.isEmpty ? "" : " (\(message))")
        case .gone(let url):
            return "Kubernetes API \(url): resourceVersion too old (410 Gone); listing again"
        case .status(let url, let status, let message):
            return "Kubernetes API \(url) answered \(status)" + (message.isEmpty ? "" : ": \(message)")
        case .badResponse(let what, let detail):
            return "unexpected \(what) from the Kubernetes API: \(detail)"
        case .token(let path, let detail):
            return "cannot read the API token file \(path): \(detail) (check token_file, or the service account token mount)"
        }
    }
}

/// The filter cannot start as configured.
public enum KubernetesSetupError: Error, CustomStringConvertible, Sendable {
    case kubeconfig(path: String, detail: String)
    case inCluster(detail: String)
    case missingNodeName
    case files(path: String, detail: String)
    case client(HTTPClientError)

    public var description: String {
        switch self {
        case .kubeconfig(let path, let detail):
            return "kubeconfig \(path): \(detail)"
        case .inCluster(let detail):
            return "api: in_cluster: \(detail)"
        case .missingNodeName:
            return "no node name: set node_name, or NODE_NAME in the environment "
                + "(in a DaemonSet: env NODE_NAME from fieldRef spec.nodeName); or api: off for path metadata only"
        case .files(let path, let detail):
            return "\(path): \(detail)"
        case .client(let e):
            return e.description
        }
    }
}
