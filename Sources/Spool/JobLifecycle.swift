/// What an attempt at a job came to, as its executor reports it (push, plan, fetch). The
/// executor writes what is particular to its kind (the instances acknowledged, the fetches
/// planned, the instances placed); the queue manager applies the rest through `JobLifecycle`.
public enum JobOutcome: Sendable, Hashable {
    /// The job is finished, recorded by the executor (done, or failed for refused instances).
    case finished
    /// This worker stops and leaves the job to the job's other workers (or to the next start):
    /// nothing to record.
    case leftToOthers
    /// The attempt failed, of a class (`FailureClassifier`): retried by the class's rule.
    case failed(FailureClass, reason: String)
    /// Not a failure: the job waits `seconds` and goes again (an announcement on its way, a plan
    /// waiting for trusts still announcing). `countsAsTry`: false gives back the try its start
    /// counted, so the job's later backoff is not that of a job failed sixty times.
    case waits(seconds: Double, reason: String, countsAsTry: Bool)
    /// Given up for good: a person looks (the source no longer holds the study).
    case givenUp(reason: String)
    /// Held for a person, loudly (an identity conflict; a study that is not all one patient's).
    case heldForAPerson(reason: String)
    /// The agent is stopping: the job resumes at the next start, from what was acknowledged.
    case interrupted
}

/// What the queue manager does with a job after an attempt. Pure: no clock, no store.
public enum JobStep: Sendable, Hashable {
    /// Nothing more (finished, or left to other workers).
    case none
    /// Deferred until `at` with the reason. `countsAsTry: false` gives the start's try back.
    /// `againstPeer`: the failure is evidence that the peer or the path is unwell (its circuit
    /// counts it). `needsPerson`: logged as an error, nothing changes until someone acts.
    case retry(at: Double, reason: String, countsAsTry: Bool, againstPeer: Bool, needsPerson: Bool)
    /// Failed for good, with the reason.
    case fail(reason: String)
    /// Held for a person.
    case hold(reason: String)
}

/// The one rule for what follows an attempt, for every kind of job (after Postfix's qmgr: the
/// queue manager owns the transitions, the delivery agents only report). Pure and clock-free
/// like `PeerCircuit`: times are arguments, randomness comes from the caller's generator.
public enum JobLifecycle {
    /// The step after `outcome`, for a job whose `failures` attempts in a row have failed,
    /// counting this one (at least 1 for a failure), at time `now`.
    ///
    /// - failed: by the class's rule (`RetryPolicy.afterFailure`); a configuration fault's reason
    ///   says so, as does a local fault's, so `consort queue` tells an operator whose fault it is;
    /// - waits: at `now + seconds`;
    /// - interrupted: due at once (the next start takes it first, as it was);
    /// - given up, held: as said.
    public static func step(
        after outcome: JobOutcome, failures: Int, now: Double, policy: RetryPolicy, using rng: inout some RandomNumberGenerator
    ) -> JobStep {
        switch outcome {
        case .finished, .leftToOthers:
            return .none
        case .failed(let failure, let reason):
            let decision = policy.afterFailure(failure, failures: max(1, failures), using: &rng)
            let words: String
            switch failure {
            case .configuration: words = "configuration fault: " + reason
            case .local: words = "local fault: " + reason
            case .transient, .refused: words = reason
            }
            return .retry(at: now + decision.delay, reason: words, countsAsTry: true, againstPeer: decision.countsAgainstPeer, needsPerson: decision.needsPerson)
        case .waits(let seconds, let reason, let countsAsTry):
            return .retry(at: now + max(0, seconds), reason: reason, countsAsTry: countsAsTry, againstPeer: false, needsPerson: false)
        case .interrupted:
            return .retry(at: now, reason: "the agent stopped; resumes at the next start", countsAsTry: true, againstPeer: false, needsPerson: false)
        case .givenUp(let reason):
            return .fail(reason: reason)
        case .heldForAPerson(let reason):
            return .hold(reason: reason)
        }
    }
}
