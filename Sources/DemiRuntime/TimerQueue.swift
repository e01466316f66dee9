import DemiCore

/// A min-heap of deadlines keyed by task index, with O(log n) arm, re-arm and cancel (no stale entries pile up when a
/// timer such as a retransmission timer is re-armed on every acknowledgement).
@usableFromInline
struct TimerQueue {
    @usableFromInline struct Entry {
        @usableFromInline var deadline: Int64
        @usableFromInline var task: UInt32
    }

    @usableFromInline var heap: UnsafeMutablePointer<Entry>
    /// For each task index, its position in `heap`, or `.max` if not armed.
    @usableFromInline var position: UnsafeMutablePointer<UInt32>
    @usableFromInline var count = 0
    @usableFromInline var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        heap = .allocate(capacity: capacity)
        position = .allocate(capacity: capacity)
        position.initialize(repeating: .max, count: capacity)
    }

    func deallocate() {
        heap.deallocate()
        position.deallocate()
    }

    mutating func grow(to newCapacity: Int) {
        guard newCapacity > capacity else { return }
        let h = UnsafeMutablePointer<Entry>.allocate(capacity: newCapacity)
        h.moveInitialize(from: heap, count: count)
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: newCapacity)
        p.initialize(repeating: .max, count: newCapacity)
        p.update(from: position, count: capacity)
        heap.deallocate()
        position.deallocate()
        heap = h
        position = p
        capacity = newCapacity
    }

    @inlinable var nextDeadline: Int64? { count > 0 ? heap[0].deadline : nil }

    @inlinable func isArmed(_ task: UInt32) -> Bool { position[Int(task)] != .max }

    @inlinable func deadline(of task: UInt32) -> Int64? {
        let p = position[Int(task)]
        return p == .max ? nil : heap[Int(p)].deadline
    }

    /// Arms (or re-arms) the timer of `task` for `deadline`.
    @usableFromInline
    mutating func arm(_ task: UInt32, at deadline: Int64) {
        let p = position[Int(task)]
        if p != .max {
            let old = heap[Int(p)].deadline
            heap[Int(p)].deadline = deadline
            if deadline < old { siftUp(Int(p)) } else { siftDown(Int(p)) }
            return
        }
        heap[count] = Entry(deadline: deadline, task: task)
        position[Int(task)] = UInt32(count)
        count += 1
        siftUp(count - 1)
    }

    /// Disarms the timer of `task`, if armed.
    @usableFromInline
    mutating func cancel(_ task: UInt32) {
        let p = Int(position[Int(task)])
        guard p != Int(UInt32.max) else { return }
        position[Int(task)] = .max
        count -= 1
        if p == count { return }
        heap[p] = heap[count]
        position[Int(heap[p].task)] = UInt32(p)
        siftDown(p)
        siftUp(p)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    @inlinable
    mutating func popExpired(now: Int64) -> UInt32? {
        guard count > 0, heap[0].deadline <= now else { return nil }
        let t = heap[0].task
        cancel(t)
        return t
    }

    @usableFromInline
    mutating func siftUp(_ start: Int) {
        var i = start
        let e = heap[i]
        while i > 0 {
            let parent = (i - 1) / 2
            guard e.deadline < heap[parent].deadline else { break }
            heap[i] = heap[parent]
            position[Int(heap[i].task)] = UInt32(i)
            i = parent
        }
        heap[i] = e
        position[Int(e.task)] = UInt32(i)
    }

    @usableFromInline
    mutating func siftDown(_ start: Int) {
        var i = start
        let e = heap[i]
        while true {
            let l = 2 * i + 1
            guard l < count else { break }
            let r = l + 1
            let c = r < count && heap[r].deadline < heap[l].deadline ? r : l
            guard heap[c].deadline < e.deadline else { break }
            heap[i] = heap[c]
            position[Int(heap[i].task)] = UInt32(i)
            i = c
        }
        heap[i] = e
        position[Int(e.task)] = UInt32(i)
    }
}
