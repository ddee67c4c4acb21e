internal import COpenSSL

/// OpenSSL is told, before anything else uses it, not to tear itself down when the process
/// exits.
///
/// Why: by default OpenSSL registers an atexit handler that frees its global state (locks,
/// error tables, providers). A daemon that has stopped cleanly calls exit() while a few threads
/// may still be inside OpenSSL — a connection thread finishing its last read, a client closing
/// its session — and such a thread then takes a freed lock. Seen once in CI: an agent stopped
/// by SIGTERM, "stopped" logged, then SIGSEGV in pthread_rwlock_wrlock under libcrypto's exit
/// handler, exit status 11 instead of 0. The kernel frees everything at exit anyway; the
/// handler is only for leak checkers (OPENSSL_INIT_NO_ATEXIT, OpenSSL 1.1.1 and later).
public enum OpenSSLLifetime {
    /// Call first thing in `main`: only the first initialisation decides whether the handler is
    /// registered. False if OpenSSL refused to initialise (TLS would then fail, with its own
    /// errors, where it is used).
    @discardableResult
    public static func keepUntilProcessExit() -> Bool {
        OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil) == 1
    }
}
