import Testing

@testable import Spool

@Suite("Delivery failure classes")
struct DeliveryFailureTests {
    @Test(arguments: [58, 59, 60, 77, 82, 83, 90, 91])
    func certificateFaultsAreConfigurationNotDowntime(_ code: Int) {
        #expect(DeliveryFailure.classify(curlCode: code, message: "") == .configuration)
        #expect(DeliveryFailure.classify(curlCode: code, message: "Connection reset by peer") == .configuration)
    }

    @Test(arguments: [
        "OpenSSL/3.0.13: error:0A000418:SSL routines::tlsv1 alert unknown ca",
        "error:0A000412:SSL routines::sslv3 alert bad certificate",
        "sslv3 alert certificate expired",
        "SSL ALERT CERTIFICATE REVOKED",
        "error:0A00045C:SSL routines::tlsv13 alert certificate required",
    ])
    func handshakeErrorsNamingACertificateAreConfiguration(_ message: String) {
        #expect(DeliveryFailure.classify(curlCode: 35, message: message) == .configuration)
    }

    @Test(arguments: [
        "OpenSSL SSL_connect: Connection reset by peer in connection to pacs.example:443",
        "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to pacs.example:443",
        "",
    ])
    func otherHandshakeErrorsAreTransient(_ message: String) {
        #expect(DeliveryFailure.classify(curlCode: 35, message: message) == .transient)
    }

    @Test(arguments: [6, 7, 16, 18, 28, 52, 55, 56, 92])
    func networkFailuresAreTransient(_ code: Int) {
        #expect(DeliveryFailure.classify(curlCode: code, message: "certificate") == .transient)
    }

    @Test(arguments: [-1, 0, 1, 3, 22, 23, 26, 27, 47, 51, 61, 999])
    func everythingElseIsPermanent(_ code: Int) {
        #expect(DeliveryFailure.classify(curlCode: code, message: "") == .permanent)
    }

    @Test func aFailureFromCurlCarriesItsClassAndAReadableReason() {
        let refused = DeliveryFailure(curlCode: 7, message: "Failed to connect to pacs.example port 443: Connection refused")
        #expect(refused.class == .transient)
        #expect(refused.reason == "could not connect to the peer (curl error 7: Failed to connect to pacs.example port 443: Connection refused)")
        #expect(refused.description.hasPrefix("transient: could not connect"))

        let untrusted = DeliveryFailure(curlCode: 60, message: "")
        #expect(untrusted.class == .configuration)
        #expect(untrusted.reason == "the peer's certificate did not verify (curl error 60)")

        let unknown = DeliveryFailure(curlCode: 3, message: "URL using bad/illegal format or missing URL")
        #expect(unknown.class == .permanent)
        #expect(unknown.reason == "curl error 3: URL using bad/illegal format or missing URL")
    }
}
