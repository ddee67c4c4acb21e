/// Consort's version, one place: `consort --version`, the metrics' `consort_agent_info`.
public enum ConsortVersion {
    public static let current = "0.1.0"
}
