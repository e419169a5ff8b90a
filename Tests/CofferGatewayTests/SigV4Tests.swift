import Foundation
import Testing

@testable import CofferGateway

/// AWS Signature Version 4 against AWS's published S3 examples ("Signature Calculations for the Authorization
/// Header: Transferring Payload in a Single Chunk"): the canonical request, the string to sign and the signature of
/// each must match the documentation byte for byte.
@Suite("SigV4")
struct SigV4Tests {
    static let signer = SigV4Signer(
        accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    /// 20130524T000000Z.
    static let date = Date(timeIntervalSince1970: 1_369_353_600)
    static let host = (name: "Host", value: "examplebucket.s3.amazonaws.com")
    static let empty = SigV4Signer.emptyPayloadHash

    @Test("GET Object with a Range header")
    func getObject() {
        let signature = Self.signer.sign(
            SigV4Signer.Request(
                method: "GET", path: "/test.txt", headers: [Self.host, (name: "Range", value: "bytes=0-9")],
                payloadHash: Self.empty),
            date: Self.date)
        #expect(
            signature.canonicalRequest == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:\(Self.empty)
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                \(Self.empty)
                """)
        #expect(
            signature.stringToSign == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """)
        #expect(signature.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(
            signature.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let added = Dictionary(uniqueKeysWithValues: signature.headersToAdd.map { ($0.name, $0.value) })
        #expect(added["x-amz-date"] == "20130524T000000Z")
        #expect(added["x-amz-content-sha256"] == Self.empty)
        #expect(added["authorization"] == signature.authorization)
    }

    @Test("PUT Object with a body, a Date header and x-amz-storage-class")
    func putObject() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let payloadHash = SigV4Signer.payloadHash(body)
        #expect(payloadHash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let signature = Self.signer.sign(
            SigV4Signer.Request(
                method: "PUT",
                path: "/" + SigV4Signer.uriEncodePath("test$file.text"),
                headers: [
                    (name: "Date", value: "Fri, 24 May 2013 00:00:00 GMT"), Self.host,
                    (name: "x-amz-storage-class", value: "REDUCED_REDUNDANCY"),
                ],
                payloadHash: payloadHash),
            date: Self.date)
        #expect(
            signature.canonicalRequest == """
                PUT
                /test%24file.text

                date:Fri, 24 May 2013 00:00:00 GMT
                host:examplebucket.s3.amazonaws.com
                x-amz-content-sha256:\(payloadHash)
                x-amz-date:20130524T000000Z
                x-amz-storage-class:REDUCED_REDUNDANCY

                date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class
                \(payloadHash)
                """)
        #expect(
            signature.stringToSign == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d
                """)
        #expect(signature.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test("GET Bucket Lifecycle: a query parameter without a value")
    func getLifecycle() {
        let signature = Self.signer.sign(
            SigV4Signer.Request(
                method: "GET", path: "/", query: [(name: "lifecycle", value: "")], headers: [Self.host],
                payloadHash: Self.empty),
            date: Self.date)
        #expect(
            signature.canonicalRequest == """
                GET
                /
                lifecycle=
                host:examplebucket.s3.amazonaws.com
                x-amz-content-sha256:\(Self.empty)
                x-amz-date:20130524T000000Z

                host;x-amz-content-sha256;x-amz-date
                \(Self.empty)
                """)
        #expect(
            signature.stringToSign.hasSuffix(
                "\n9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca"))
        #expect(signature.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test("Get Bucket (List Objects): query parameters sorted")
    func listObjects() {
        // Given out of order: the canonical query string sorts them.
        let signature = Self.signer.sign(
            SigV4Signer.Request(
                method: "GET", path: "/", query: [(name: "prefix", value: "J"), (name: "max-keys", value: "2")],
                headers: [Self.host], payloadHash: Self.empty),
            date: Self.date)
        #expect(
            signature.canonicalRequest == """
                GET
                /
                max-keys=2&prefix=J
                host:examplebucket.s3.amazonaws.com
                x-amz-content-sha256:\(Self.empty)
                x-amz-date:20130524T000000Z

                host;x-amz-content-sha256;x-amz-date
                \(Self.empty)
                """)
        #expect(
            signature.stringToSign.hasSuffix(
                "\ndf57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7"))
        #expect(signature.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test("a streamed body is signed as UNSIGNED-PAYLOAD, and that changes the signature")
    func unsignedPayload() {
        func sign(_ payloadHash: String) -> SigV4Signer.Signature {
            Self.signer.sign(
                SigV4Signer.Request(method: "PUT", path: "/b/k", headers: [Self.host], payloadHash: payloadHash),
                date: Self.date)
        }
        let unsigned = sign(SigV4Signer.unsignedPayload)
        #expect(unsigned.canonicalRequest.hasSuffix("\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"))
        #expect(unsigned.canonicalRequest.contains("\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"))
        #expect(unsigned.signature != sign(Self.empty).signature)
    }

    @Test("the signature depends on the date, the region and the secret; nothing else is random")
    func deterministic() {
        let request = SigV4Signer.Request(method: "GET", path: "/b/k", headers: [Self.host], payloadHash: Self.empty)
        let first = Self.signer.sign(request, date: Self.date)
        #expect(Self.signer.sign(request, date: Self.date).signature == first.signature)
        #expect(Self.signer.sign(request, date: Self.date.addingTimeInterval(1)).signature != first.signature)
        let otherRegion = SigV4Signer(
            accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "eu-west-1")
        let inRegion = otherRegion.sign(request, date: Self.date)
        #expect(inRegion.stringToSign.contains("\n20130524/eu-west-1/s3/aws4_request\n"))
        #expect(inRegion.signature != first.signature)
        let otherSecret = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wrong")
        #expect(otherSecret.sign(request, date: Self.date).signature != first.signature)
        #expect(!"\(Self.signer)".contains("EXAMPLEKEY"))
    }

    @Test("URI encoding: unreserved characters kept, everything else as uppercase %XY of the UTF-8 bytes")
    func uriEncoding() {
        #expect(SigV4Signer.uriEncode("AZaz09-._~") == "AZaz09-._~")
        #expect(SigV4Signer.uriEncode("a b+c/d=e&f") == "a%20b%2Bc%2Fd%3De%26f")
        #expect(SigV4Signer.uriEncodePath("object/a b/ü/文") == "object/a%20b/%C3%BC/%E6%96%87")
        #expect(SigV4Signer.uriEncodePath("a//b%") == "a//b%25")
        #expect(SigV4Signer.uriEncode("*'()!$,;:@") == "%2A%27%28%29%21%24%2C%3B%3A%40")
    }

    @Test("canonical headers: names lowercased and sorted, values trimmed and collapsed, repeats joined")
    func canonicalHeaders() {
        let (block, signed) = SigV4Signer.canonicalHeaders([
            (name: "X-Amz-Meta-B", value: "  two   words  "), (name: "Host", value: "h"),
            (name: "x-amz-meta-a", value: "1"), (name: "X-AMZ-META-A", value: "2"),
        ])
        #expect(block == "host:h\nx-amz-meta-a:1,2\nx-amz-meta-b:two words\n")
        #expect(signed == "host;x-amz-meta-a;x-amz-meta-b")
    }

    @Test("timestamps: the x-amz-date and scope forms of several instants, leap days included")
    func timestamps() {
        func stamp(_ seconds: TimeInterval) -> String { UTCTimestamp(Date(timeIntervalSince1970: seconds)).amzDate }
        #expect(stamp(0) == "19700101T000000Z")
        #expect(stamp(1_369_353_600) == "20130524T000000Z")
        #expect(stamp(951_782_400 + 86_399) == "20000229T235959Z")
        #expect(stamp(4_107_542_400) == "21000301T000000Z")
        #expect(stamp(1_700_000_000.9) == "20231114T221320Z")
        #expect(UTCTimestamp(Date(timeIntervalSince1970: 1_369_353_600)).day == "20130524")
        for days in [-1, 0, 59, 365, 10_957, 11_016, 47_541] as [Int64] {
            let (year, month, day) = UTCCalendar.civil(fromDays: days)
            #expect(UTCCalendar.days(year: year, month: month, day: day) == days)
        }
    }
}
