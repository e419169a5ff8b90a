import AsyncHTTPClient
import CofferGateway
import CofferTestKit
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a moto server could not be used.
struct MotoServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A real S3 server for the gateway tests: moto's standalone server, run by the test kit's ``MotoProcess`` (a child
/// process reaped with `waitpid`, every wait bounded).
typealias MotoServer = MotoProcess

extension MotoServer {
    /// Runs `body` with a fresh server and kills the server afterwards, also when `body` throws (then its log is kept
    /// for a post-mortem).
    static func withServer<T>(_ body: (MotoServer) async throws -> T) async throws -> T {
        let server = try await start()
        do {
            let result = try await body(server)
            await server.kill()
            try? FileManager.default.removeItem(atPath: server.logPath)  // kept only when the test failed
            return result
        } catch {
            await server.kill()
            throw error
        }
    }

    /// An S3 endpoint on this server. moto accepts any credentials until ``enableAuthentication(userName:)``.
    func endpoint(
        bucket: String = "coffer", accessKey: String = "testing", secretKey: String = "testing"
    )
        -> S3Endpoint
    {
        S3Endpoint(host: "127.0.0.1", port: port, bucket: bucket, accessKey: accessKey, secretKey: secretKey)
    }
}

extension MotoServer {
    /// Creates an IAM user allowed `s3:*` with a fresh access key, then switches on moto's request authentication
    /// (`POST /moto-api/reset-auth` with 0): from then on every request must carry a valid SigV4 signature of that
    /// key, checked by moto with botocore's signer, or is refused (`SignatureDoesNotMatch`, `InvalidAccessKeyId`).
    func enableAuthentication(userName: String = "coffer") async throws -> (accessKey: String, secretKey: String) {
        _ = try await iam(["Action": "CreateUser", "UserName": userName])
        let created = try await iam(["Action": "CreateAccessKey", "UserName": userName])
        guard let accessKey = Self.element("AccessKeyId", in: created),
            let secretKey = Self.element("SecretAccessKey", in: created)
        else { throw MotoServerError("CreateAccessKey answered without a key:\n\(created)") }
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
        _ = try await iam(
            ["Action": "PutUserPolicy", "UserName": userName, "PolicyName": "s3-all", "PolicyDocument": policy])

        var request = HTTPClientRequest(url: baseURL + "/moto-api/reset-auth")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "0"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            throw MotoServerError("reset-auth answered \(response.status): \(String(buffer: body))")
        }
        return (accessKey, secretKey)
    }

    /// One IAM query-API call (form-encoded POST, signed for service `iam`); returns the XML answer.
    private func iam(_ parameters: [String: String]) async throws -> String {
        var form = parameters
        form["Version"] = "2010-05-08"
        let body = form.sorted { $0.key < $1.key }
            .map { SigV4Signer.uriEncode($0.key) + "=" + SigV4Signer.uriEncode($0.value) }
            .joined(separator: "&")
        let host = "127.0.0.1:\(port)"
        let headers = [
            (name: "host", value: host), (name: "content-type", value: "application/x-www-form-urlencoded"),
        ]
        let signer = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "testing", service: "iam")
        let signature = signer.sign(
            SigV4Signer.Request(
                method: "POST", path: "/", headers: headers, payloadHash: SigV4Signer.payloadHash(Array(body.utf8))),
            date: Date()
        )
        var request = HTTPClientRequest(url: baseURL + "/")
        request.method = .POST
        for header in headers + signature.headersToAdd { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok else {
            throw MotoServerError("IAM \(parameters["Action"] ?? "") answered \(response.status): \(text)")
        }
        return text
    }

    /// The text of the first `<name>…</name>` in `xml`.
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>"),
            open.upperBound <= close.lowerBound
        else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
    }
}
