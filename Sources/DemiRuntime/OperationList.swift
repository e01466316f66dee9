import DemiCore

/// A FIFO of operations waiting on one queue (its pops, its pushes, ...), threaded through the operations' `link`
/// fields, so queuing needs no memory of its own. Only the head may touch the device; when it completes,
/// ``removeHead(_:)`` wakes the next one.
@frozen
public struct OperationList: Sendable {
    @usableFromInline var first: UInt32 = Operation.none
    @usableFromInline var last: UInt32 = Operation.none

    /// The oldest operation (the one allowed to proceed), or `Operation.none`.
    @inlinable public var head: UInt32 { first }

    /// The newest operation, or `Operation.none`.
    @inlinable public var tail: UInt32 { last }

    @inlinable public init() {}

    @inlinable public var isEmpty: Bool { first == Operation.none }

    /// Appends operation `t`.
    @inlinable
    public mutating func append(_ t: UInt32, _ scheduler: Scheduler) {
        if last == Operation.none { first = t } else { scheduler.operation(last).pointee.link = t }
        last = t
    }

    /// Removes the head and wakes the operation behind it, which may now proceed.
    @inlinable
    public mutating func removeHead(_ scheduler: Scheduler) {
        let next = scheduler.operation(first).pointee.link
        first = next
        if next == Operation.none { last = Operation.none } else { scheduler.wake(next) }
    }

    /// Empties the list, calling `body` on each operation in order (for failing them all at close).
    @inlinable
    public mutating func removeAll(_ scheduler: Scheduler, _ body: (UInt32) -> Void) {
        var t = first
        first = Operation.none
        last = Operation.none
        while t != Operation.none {
            let next = scheduler.operation(t).pointee.link
            body(t)
            t = next
        }
    }
}

extension Scheduler {
    /// A token for an operation that finished synchronously (such as a close): spawned and completed at once.
    public func spawnCompleted(_ code: OperationCode, qd: QDesc) throws(Errno) -> QToken {
        try spawnCompleted(code, qd: qd, result: QResult(opcode: code, qd: qd, qt: QToken(rawValue: 0)))
    }
}
