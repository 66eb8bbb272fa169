// Arithmetic that never traps, for values that come from input, files or the clock: a record's time
// may be year 0001 or 9999 (clamped to Int64.min/max by the timestamp parser), a file may hold any
// number, and a trap is a crash on a node.

extension FixedWidthInteger {
    /// `self + other`, pinned to the type's bounds instead of overflowing.
    @inline(__always)
    public func addingSaturating(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }

    /// `self - other`, pinned to the type's bounds instead of overflowing.
    @inline(__always)
    public func subtractingSaturating(_ other: Self) -> Self {
        let (difference, overflow) = subtractingReportingOverflow(other)
        guard overflow else { return difference }
        return other > 0 ? .min : .max
    }

    /// `self * other`, pinned to the type's bounds instead of overflowing.
    @inline(__always)
    public func multipliedSaturating(by other: Self) -> Self {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        guard overflow else { return product }
        return (self < 0) != (other < 0) ? .min : .max
    }
}

extension Int {
    /// `value` rounded toward zero and pinned to Int's range; NaN is 0. `Int(Double)` traps on both.
    @inline(__always)
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9.223372036854775e18 {
            self = .max
        } else if value <= -9.223372036854775e18 {
            self = .min
        } else {
            self = Int(value)
        }
    }
}

extension Int64 {
    /// `value` rounded toward zero and pinned to Int64's range; NaN is 0.
    @inline(__always)
    public init(saturating value: Double) { self = Int64(Int(saturating: value)) }
}

/// Seconds from wall-clock nanoseconds `earlier` to `later` (negative if `later` is before), whatever
/// the two values: a record's own time can be anything from Int64.min to Int64.max.
@inline(__always)
public func secondsBetween(_ earlier: Int64, _ later: Int64) -> Double {
    Double(later.subtractingSaturating(earlier)) / 1e9
}
