/// UID syntax (PS3.5 §9.1): digits and dots, at most 64 characters, no empty component, no
/// leading zero in a component of more than one digit. Checked before a UID names a file.
public enum UID {
    public static func isValid(_ text: String) -> Bool {
        // One pass over the bytes (it runs for every file a catch-up scan reads): digits in
        // components separated by single dots, none empty, none with a leading zero.
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= 64 else { return false }
        var componentLength = 0
        var leadingZero = false
        for byte in bytes {
            if byte == 0x2E {
                guard componentLength > 0 else { return false }
                componentLength = 0
            } else {
                guard byte >= 0x30 && byte <= 0x39, !(leadingZero && componentLength == 1) else { return false }
                if componentLength == 0 { leadingZero = byte == 0x30 }
                componentLength += 1
            }
        }
        return componentLength > 0
    }
}
