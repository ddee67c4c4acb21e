import DICOM
import Foundation

/// The answer to a STOW-RS request (PS3.18 §10.5.3): which instances the origin server stored,
/// which it did not and why, as a DICOM JSON data set (PS3.18 Annex F):
/// 00081190 RetrieveURL, 00081199 ReferencedSOPSequence, 00081198 FailedSOPSequence (each item
/// 00081150 ReferencedSOPClassUID, 00081155 ReferencedSOPInstanceUID, 00081197 FailureReason or
/// 00081196 WarningReason).
///
/// PS3.18 has no way to say "I held this one already": a server lists such an instance as stored
/// (Orthanc does). A Consort receiver says so in a private attribute of its
/// ReferencedSOPSequence item — private creator "CONSORT" in (0009,0010), (0009,1001) CS
/// "ALREADY HELD" — which other clients ignore, as private attributes are meant to be, and
/// `consort send` reads to tell the operator which instances the peer had before. In the same
/// way a FailedSOPSequence item carries the refusal in words, (0009,1002) LT under the same
/// creator ("already held with different content: held sha256 …, received sha256 …"): a
/// FailureReason number alone does not tell a PACS manager what to do.
public struct StowResponse: Sendable, Equatable {
    public struct Stored: Sendable, Equatable {
        public var sopClassUID: String
        public var sopInstanceUID: String
        public var retrieveURL: String?
        public var warningReason: UInt16?
        /// The server held these same bytes before this request (and kept its copy).
        public var alreadyHeld: Bool
        public init(sopClassUID: String, sopInstanceUID: String, retrieveURL: String? = nil, warningReason: UInt16? = nil, alreadyHeld: Bool = false) {
            self.sopClassUID = sopClassUID
            self.sopInstanceUID = sopInstanceUID
            self.retrieveURL = retrieveURL
            self.warningReason = warningReason
            self.alreadyHeld = alreadyHeld
        }
    }

    /// The private block that carries "already held" (see above).
    static let privateCreator = "CONSORT"
    static let privateCreatorKey = "00090010"
    static let heldKey = "00091001"
    static let heldValue = "ALREADY HELD"
    static let reasonTextKey = "00091002"

    public struct Failed: Sendable, Equatable {
        public var sopClassUID: String
        public var sopInstanceUID: String
        public var reason: UInt16
        /// Why, in words (a Consort receiver's private (0009,1002); nil from other servers).
        public var reasonText: String?
        public init(sopClassUID: String, sopInstanceUID: String, reason: UInt16, reasonText: String? = nil) {
            self.sopClassUID = sopClassUID
            self.sopInstanceUID = sopInstanceUID
            self.reason = reason
            self.reasonText = reasonText
        }
    }

    public var retrieveURL: String?
    public var stored: [Stored]
    public var failed: [Failed]

    public init(retrieveURL: String? = nil, stored: [Stored] = [], failed: [Failed] = []) {
        self.retrieveURL = retrieveURL
        self.stored = stored
        self.failed = failed
    }

    /// The failure reason of an instance the sender may not store here (a peer's object that is
    /// not a result for a study the site sent it): when every instance of a request is refused
    /// so, the request is answered 403 (not permitted), not 409.
    public static let notPermitted: UInt16 = 0xA900

    /// The status a server answers with (PS3.18 §10.5.3.1): 200 when everything was stored
    /// without warnings, 403 when every instance was not permitted, 409 when nothing was
    /// stored, 202 otherwise.
    public var httpStatus: Int {
        if failed.isEmpty && stored.allSatisfy({ $0.warningReason == nil }) { return 200 }
        if stored.isEmpty && !failed.isEmpty && failed.allSatisfy({ $0.reason == Self.notPermitted }) { return 403 }
        if stored.isEmpty && !failed.isEmpty { return 409 }
        return 202
    }

    // MARK: - DICOM JSON

    /// The response body, application/dicom+json (keys in order, as DICOM JSON lists them).
    public func json() -> [UInt8] {
        func element(_ vr: String, _ value: JSON) -> JSON { .object([("vr", .string(vr)), ("Value", .array([value]))]) }
        func sequence(_ items: [JSON]) -> JSON { .object([("vr", .string("SQ")), ("Value", .array(items))]) }
        var members: [(String, JSON)] = []
        if let retrieveURL { members.append(("00081190", element("UR", .string(retrieveURL)))) }
        if !failed.isEmpty {
            members.append(("00081198", sequence(failed.map { item in
                var fields: [(String, JSON)] = [
                    ("00081150", element("UI", .string(item.sopClassUID))),
                    ("00081155", element("UI", .string(item.sopInstanceUID))),
                    ("00081197", element("US", .int(Int64(item.reason)))),
                ]
                if let text = item.reasonText {
                    fields.append((Self.privateCreatorKey, element("LO", .string(Self.privateCreator))))
                    fields.append((Self.reasonTextKey, element("LT", .string(text))))
                }
                return .object(fields)
            })))
        }
        if !stored.isEmpty {
            members.append(("00081199", sequence(stored.map { item in
                var fields: [(String, JSON)] = [
                    ("00081150", element("UI", .string(item.sopClassUID))),
                    ("00081155", element("UI", .string(item.sopInstanceUID))),
                ]
                if let url = item.retrieveURL { fields.append(("00081190", element("UR", .string(url)))) }
                if let w = item.warningReason { fields.append(("00081196", element("US", .int(Int64(w))))) }
                if item.alreadyHeld {
                    fields.append((Self.privateCreatorKey, element("LO", .string(Self.privateCreator))))
                    fields.append((Self.heldKey, element("CS", .string(Self.heldValue))))
                }
                return .object(fields)
            })))
        }
        return JSON.object(members).bytes()
    }

    /// Reads a response body. Orthanc and others answer with a JSON object; some wrap it in a
    /// one-element array. An empty body (some servers' 200 or 204) means nothing was reported.
    public static func parse(_ body: [UInt8]) throws(StowResponseError) -> StowResponse {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return StowResponse() }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            throw StowResponseError("The STOW-RS response is not JSON: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        let object: [String: Any]
        if let o = parsed as? [String: Any] {
            object = o
        } else if let a = parsed as? [[String: Any]], a.count == 1 {
            object = a[0]
        } else {
            throw StowResponseError("The STOW-RS response is not a DICOM JSON data set")
        }
        var response = StowResponse(retrieveURL: string(object["00081190"]))
        for item in items(object["00081199"]) {
            guard let cls = string(item["00081150"]), let uid = string(item["00081155"]) else {
                throw StowResponseError("A ReferencedSOPSequence item lacks its SOP Class or Instance UID")
            }
            // Only our own private block counts: another implementation's (0009,xx) means something else.
            let held = string(item[privateCreatorKey]) == privateCreator && string(item[heldKey]) == heldValue
            response.stored.append(
                Stored(sopClassUID: cls, sopInstanceUID: uid, retrieveURL: string(item["00081190"]), warningReason: number(item["00081196"]), alreadyHeld: held))
        }
        for item in items(object["00081198"]) {
            let cls = string(item["00081150"]) ?? ""
            guard let uid = string(item["00081155"]) else {
                throw StowResponseError("A FailedSOPSequence item lacks its SOP Instance UID")
            }
            // A failure without a reason is still a failure: 0x0110, processing failure.
            let text = string(item[privateCreatorKey]) == privateCreator ? string(item[reasonTextKey]) : nil
            response.failed.append(Failed(sopClassUID: cls, sopInstanceUID: uid, reason: number(item["00081197"]) ?? 0x0110, reasonText: text))
        }
        return response
    }

    private static func values(_ element: Any?) -> [Any] { ((element as? [String: Any])?["Value"] as? [Any]) ?? [] }
    private static func string(_ element: Any?) -> String? { values(element).first as? String }
    private static func number(_ element: Any?) -> UInt16? {
        guard let n = values(element).first as? NSNumber, n.intValue >= 0, n.intValue <= 0xFFFF else { return nil }
        return UInt16(n.intValue)
    }
    private static func items(_ element: Any?) -> [[String: Any]] { values(element).compactMap { $0 as? [String: Any] } }
}

public struct StowResponseError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
