/// What the sender does next after a delivery attempt: the one place that maps HTTP statuses and
/// STOW-RS failure reasons to the spool's decisions (STYLE: classify errors by what the caller
/// does next).
public enum DeliveryClass: String, Sendable, Equatable {
    /// The peer has the instance (stored now, or already held).
    case delivered
    /// Try again later with backoff: the peer or the path is unwell (refused, timeout, 5xx, 429,
    /// out of resources).
    case transient
    /// Retrying will not help: hold the job for a person (rejected instance, not authorised,
    /// unsupported SOP class or transfer syntax).
    case permanent
}

public enum DeliveryClassifier {
    /// FailureReason 0x0111, Duplicate SOP Instance: some servers' way of saying they hold it already.
    public static let duplicateInstance: UInt16 = 0x0111

    /// An HTTP status of a STOW-RS (or any DICOMweb) request, before looking at the body.
    public static func classify(httpStatus status: Int) -> DeliveryClass {
        switch status {
        case 200..<300: return .delivered
        // Request Timeout, Too Early, Too Many Requests: the peer asks us to come back.
        case 408, 425, 429: return .transient
        // 409 Conflict: nothing stored; the body's reasons decide per instance.
        case 409: return .permanent
        case 400..<500: return .permanent
        // 501 Not Implemented will not change by waiting; the other 5xx may.
        case 501, 505: return .permanent
        case 500..<600: return .transient
        default: return .permanent
        }
    }

    /// A STOW-RS FailureReason (00081197), PS3.4 Annex C status codes as PS3.18 uses them.
    public static func classify(failureReason reason: UInt16) -> DeliveryClass {
        switch reason {
        case duplicateInstance: return .delivered  // the peer already holds it
        case 0x0110: return .transient  // Processing failure
        case 0xA700...0xA7FF: return .transient  // Refused: out of resources
        case 0x0117, 0x0118, 0x0119, 0x0122, 0x0124, 0x0212, 0xC122: return .permanent
        case 0xA900...0xA9FF: return .permanent  // Data set does not match SOP class
        case 0xC000...0xCFFF: return .permanent  // Cannot understand
        default: return .permanent  // unknown: a person should look
        }
    }

    /// What each sent instance's fate is, from the status and the parsed body. Instances the
    /// response does not mention take the status's class (a 200 with an empty body: delivered;
    /// a 503: transient).
    public static func outcomes(status: Int, response: StowResponse, sent sopInstanceUIDs: [String]) -> [String: DeliveryClass] {
        var result: [String: DeliveryClass] = [:]
        let byStatus = classify(httpStatus: status)
        for uid in sopInstanceUIDs { result[uid] = byStatus }
        if (200..<300).contains(status) || status == 409 {
            for stored in response.stored where result[stored.sopInstanceUID] != nil { result[stored.sopInstanceUID] = .delivered }
            for failed in response.failed where result[failed.sopInstanceUID] != nil {
                result[failed.sopInstanceUID] = classify(failureReason: failed.reason)
            }
            // A 2xx that reports some instances but not others: the silent ones were not stored
            // (Orthanc answers 200 after dropping an unparseable part); try them again.
            if !response.stored.isEmpty || !response.failed.isEmpty {
                let mentioned = Set(response.stored.map(\.sopInstanceUID) + response.failed.map(\.sopInstanceUID))
                for uid in sopInstanceUIDs where !mentioned.contains(uid) { result[uid] = .transient }
            }
        }
        return result
    }
}
