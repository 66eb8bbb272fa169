import AnduinCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the API server is and how to authenticate, resolved once at start-up.
public struct KubeEndpoint: Sendable, Equatable {
    public enum Token: Sendable, Equatable {
        case none
        case literal(String)
        /// Re-read when the file changes: bound service-account tokens are rotated about hourly.
        case file(String)
    }

    /// Without a trailing slash: `https://10.0.0.1:443`.
    public var server: String
    public var token: Token
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var insecureSkipVerify: Bool

    public init(server: String, token: Token = .none, caFile: String? = nil, certFile: String? = nil,
                keyFile: String? = nil, insecureSkipVerify: Bool = false) {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        self.server = s
        self.token = token
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.insecureSkipVerify = insecureSkipVerify
    }

    public static let serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// In a pod: the API service from the environment kubelet sets, the mounted service account.
    public static func inCluster(environment: [String: String], tokenFile: String?, caFile: String?)
        throws(KubernetesSetupError) -> KubeEndpoint {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw .inCluster(detail: "KUBERNETES_SERVICE_HOST is not set, so this is not running in a pod; "
                + "set kubeconfig or api_url, or api: off")
        }
        let port = environment["KUBERNETES_SERVICE_PORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "443"
        let h = host.contains(":") ? "[\(host)]" : host  // IPv6 service address
        let token = tokenFile ?? serviceAccountDir + "/token"
        guard access(token, R_OK) == 0 else {
            throw .inCluster(detail: "token file \(token) is not readable (\(String(cString: strerror(errno)))): "
                + "is automountServiceAccountToken off? Mount a token or set token_file")
        }
        return KubeEndpoint(server: "https://\(h):\(port)", token: .file(token),
                            caFile: caFile ?? serviceAccountDir + "/ca.crt")
    }
}
