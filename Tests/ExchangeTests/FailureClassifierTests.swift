import DICOMweb
import Spool
import Transport
import Testing

@testable import Exchange

/// The one classifier, as tables: every kind of answer the agent, `consort send` and
/// `consort fetch` meet, and the class each becomes (what the caller does next).
@Suite("Failure classifier")
struct FailureClassifierTests {
    @Test("HTTP statuses", arguments: [
        (408, FailureClass.transient), (425, .transient), (429, .transient), (500, .transient), (502, .transient), (503, .transient),
        (504, .transient), (401, .configuration), (403, .configuration), (421, .configuration), (400, .refused), (404, .refused),
        (409, .refused), (413, .refused), (415, .refused), (501, .refused), (505, .refused), (302, .refused),
    ])
    func statuses(_ status: Int, _ expected: FailureClass) {
        #expect(FailureClassifier.failure(httpStatus: status) == expected)
        #expect(FailureClassifier.delivery(httpStatus: status) == .failed(expected))
    }

    @Test func successIsDelivered() {
        for status in [200, 202, 204] { #expect(FailureClassifier.delivery(httpStatus: status) == .delivered) }
    }

    @Test("STOW-RS failure reasons", arguments: [
        (UInt16(0x0111), DeliveryClass.delivered), (0x0110, .failed(.transient)), (0xA700, .failed(.transient)), (0xA7FF, .failed(.transient)),
        (0xA900, .failed(.refused)), (0xC000, .failed(.refused)), (0x0122, .failed(.refused)), (0x0124, .failed(.refused)), (0x1234, .failed(.refused)),
    ])
    func reasons(_ reason: UInt16, _ expected: DeliveryClass) {
        #expect(FailureClassifier.delivery(failureReason: reason) == expected)
    }

    @Test("libcurl codes", arguments: [
        (6, FailureClass.transient), (7, .transient), (16, .transient), (18, .transient), (28, .transient), (52, .transient), (55, .transient),
        (56, .transient), (92, .transient), (1, .configuration), (3, .configuration), (58, .configuration), (59, .configuration),
        (60, .configuration), (77, .configuration), (82, .configuration), (83, .configuration), (90, .configuration), (91, .configuration),
        (23, .local), (26, .local), (27, .local), (-1, .refused), (0, .refused), (22, .refused), (47, .refused), (999, .refused),
    ])
    func curlCodes(_ code: Int, _ expected: FailureClass) {
        #expect(FailureClassifier.failure(curlCode: code, message: "") == expected)
    }

    @Test(arguments: [
        "OpenSSL/3.0.13: error:0A000418:SSL routines::tlsv1 alert unknown ca",
        "error:0A000412:SSL routines::sslv3 alert bad certificate",
        "sslv3 alert certificate expired",
        "SSL ALERT CERTIFICATE REVOKED",
        "error:0A00045C:SSL routines::tlsv13 alert certificate required",
    ])
    func handshakeErrorsNamingACertificateAreConfiguration(_ message: String) {
        #expect(FailureClassifier.failure(curlCode: 35, message: message) == .configuration)
    }

    @Test(arguments: [
        "OpenSSL SSL_connect: Connection reset by peer in connection to pacs.example:443",
        "OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to pacs.example:443",
        "",
    ])
    func otherHandshakeErrorsAreTransient(_ message: String) {
        #expect(FailureClassifier.failure(curlCode: 35, message: message) == .transient)
    }

    /// A network failure stays transient whatever its words say.
    @Test(arguments: [6, 7, 16, 18, 28, 52, 55, 56, 92])
    func networkFailuresAreTransientWhateverTheirWords(_ code: Int) {
        #expect(FailureClassifier.failure(curlCode: code, message: "certificate") == .transient)
    }

    @Test func aBodySourceOrSinkThatFailedIsOurOwnSide() {
        struct DiskGone: Error {}
        var error = HTTPClientError(code: 26, message: "read callback failed", url: "https://x")
        #expect(FailureClassifier.failure(error) == .local)
        error = HTTPClientError(code: 56, message: "", url: "https://x", callbackError: DiskGone())
        #expect(FailureClassifier.failure(error) == .local)
        error = HTTPClientError(code: 7, message: "Connection refused", url: "https://x")
        #expect(FailureClassifier.failure(error) == .transient)
    }

    @Test("WADO-RS answers", arguments: [
        (404, FailureClass.refused), (403, .configuration), (500, .transient), (503, .transient), (429, .transient), (406, .refused),
    ])
    func wado(_ status: Int, _ expected: FailureClass) {
        #expect(FailureClassifier.failure(wadoStatus: status) == expected)
    }

    @Test("coordinator answers", arguments: [
        (Int?.none, FailureClass.transient), (404, .transient), (503, .transient), (403, .configuration), (400, .refused),
    ])
    func coordinator(_ status: Int?, _ expected: FailureClass) {
        #expect(FailureClassifier.failure(coordinatorStatus: status) == expected)
    }

    static let mixed = StowResponse(
        stored: [StowResponse.Stored(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1")],
        failed: [StowResponse.Failed(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.2", reason: 0xA700)])

    @Test func eachInstanceGetsItsOwnFate() {
        let sent = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
        let outcomes = FailureClassifier.outcomes(status: 202, response: Self.mixed, sent: sent)
        #expect(outcomes["1.2.3.1"] == .delivered)
        #expect(outcomes["1.2.3.2"] == .failed(.transient))  // out of resources: retry later
        #expect(outcomes["1.2.3.3"] == .failed(.transient))  // not mentioned in a 2xx: not stored, retry
        let down = FailureClassifier.outcomes(status: 503, response: StowResponse(), sent: sent)
        #expect(Set(down.values) == [.failed(.transient)])
        let refusedAsCaller = FailureClassifier.outcomes(status: 403, response: StowResponse(), sent: sent)
        #expect(Set(refusedAsCaller.values) == [.failed(.configuration)])
        let silentOK = FailureClassifier.outcomes(status: 200, response: StowResponse(), sent: sent)
        #expect(Set(silentOK.values) == [.delivered])
    }
}
