import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The process's limit on open descriptors: every connection, segment and spill file being read holds one.
enum OpenFileLimit {
    /// Raises the soft limit to the hard limit (a default soft limit of 1,024 is reached by a thousand idle
    /// connections) and logs the limit in force. Failure is logged, never fatal.
    static func raise(logger: Logger) {
        #if canImport(Glibc)
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            logger.warning("cannot read the open-file limit", metadata: ["errno": "\(errno)"])
            return
        }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
                logger.warning(
                    "cannot raise the open-file limit",
                    metadata: ["soft": "\(before)", "hard": "\(limit.rlim_max)", "errno": "\(errno)"])
                return
            }
        }
        logger.info(
            "open-file limit", metadata: ["limit": "\(limit.rlim_cur)", "was": "\(before)"])
        #endif
    }
}
