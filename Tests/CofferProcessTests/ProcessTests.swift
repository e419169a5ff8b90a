import Testing

/// Every test that runs the real `coffer` binary as a child process. Serialized: they measure and race on a small
/// machine, so they do not compete with one another for its cores and its disk.
@Suite(.serialized) struct ProcessTests {}
