import Testing

@testable import CofferGateway

/// Rendezvous hashing's properties, measured on 100,000 keys.
struct RendezvousTests {
    static let keyCount = 100_000
    static let keys = (0..<keyCount).map { "object/k\($0)" }
    static let ids = (1...6).map { "s3://10.0.0.\($0):9000/coffer" }

    static func owners(_ ring: Rendezvous) -> [String] {
        keys.map { ring.members[ring.owner(of: $0)!].id }
    }

    @Test("four backends get a quarter of the keys each (within ±5 % of 25 %)")
    func balanced() {
        let owners = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(4))))
        for id in Self.ids.prefix(4) {
            let share = Double(owners.filter { $0 == id }.count) / Double(Self.keyCount)
            #expect(share > 0.2375 && share < 0.2625, "\(id): \(share)")
        }
    }

    @Test("adding a fifth backend moves about a fifth of the keys, all of them to the new backend")
    func addingMovesOnlyToTheNewBackend() {
        let before = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(4))))
        let after = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(5))))
        var moved = 0
        var movedElsewhere = 0
        for (old, new) in zip(before, after) where old != new {
            moved += 1
            if new != Self.ids[4] { movedElsewhere += 1 }
        }
        let share = Double(moved) / Double(Self.keyCount)
        print("rendezvous: adding a 5th backend to 4 moved \(moved) of \(Self.keyCount) keys (\(share))")
        #expect(share > 0.17 && share < 0.23)
        #expect(movedElsewhere == 0)
    }

    @Test("the order of the backend list does not matter")
    func orderIndependent() {
        let forward = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(5))))
        let backward = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(5).reversed())))
        #expect(forward == backward)
    }

    @Test("removing a backend moves only its keys, spread over the others")
    func removingMovesOnlyItsKeys() {
        let before = Self.owners(Rendezvous(ids: Array(Self.ids.prefix(5))))
        var remaining = Array(Self.ids.prefix(5))
        let removed = remaining.remove(at: 2)
        let after = Self.owners(Rendezvous(ids: remaining))
        var receivers: [String: Int] = [:]
        for (old, new) in zip(before, after) {
            if old == removed {
                receivers[new, default: 0] += 1
            } else {
                #expect(old == new)
            }
        }
        let orphans = before.filter { $0 == removed }.count
        #expect(receivers.values.reduce(0, +) == orphans)
        #expect(receivers.count == 4)
        for (id, count) in receivers {
            let share = Double(count) / Double(orphans)
            #expect(share > 0.2 && share < 0.3, "\(id) took \(share) of the removed backend's keys")
        }
    }

    @Test("the second choice is the owner after the first is removed (replica sets are stable)")
    func rankingIsConsistentWithRemoval() {
        let full = Rendezvous(ids: Array(Self.ids.prefix(5)))
        let without = Rendezvous(ids: Array(Self.ids.prefix(5)).filter { $0 != Self.ids[0] })
        for key in Self.keys.prefix(5000) {
            let ranked = full.rank(key: key).map { full.members[$0].id }
            #expect(ranked.count == 5 && Set(ranked).count == 5)
            let expected = ranked.first { $0 != Self.ids[0] }
            #expect(without.members[without.owner(of: key)!].id == expected)
        }
    }

    @Test("weights give proportional shares, and moves stay minimal when a weight changes")
    func weights() {
        let members = [
            Rendezvous.Member(id: Self.ids[0], weight: 1), Rendezvous.Member(id: Self.ids[1], weight: 1),
            Rendezvous.Member(id: Self.ids[2], weight: 2),
        ]
        let owners = Self.owners(Rendezvous(members: members))
        let expected = [0.25, 0.25, 0.5]
        for (index, member) in members.enumerated() {
            let share = Double(owners.filter { $0 == member.id }.count) / Double(Self.keyCount)
            #expect(abs(share - expected[index]) < 0.015, "\(member.id) weight \(member.weight): \(share)")
        }
        // Raising one weight only moves keys to that member.
        var heavier = members
        heavier[0].weight = 2
        let after = Self.owners(Rendezvous(members: heavier))
        for (old, new) in zip(owners, after) where old != new {
            #expect(new == Self.ids[0])
        }
    }

    @Test("the hash is fixed: the same on every machine and in every run")
    func stableHash() {
        #expect(Rendezvous.hash(Array("".utf8)) == Rendezvous.hash([]))
        #expect(Rendezvous.hash(Array("a".utf8)) != Rendezvous.hash(Array("a\0".utf8)))
        #expect(Rendezvous.hash(Array("coffer".utf8)) == Self.pinnedHash)
        let ring = Rendezvous(ids: Array(Self.ids.prefix(4)))
        let keys = ["object/abc", "store/a/b", "fileserver/x", "object/1"]
        #expect(keys.map { ring.rank(key: $0) } == Self.pinnedRanks)
    }

    /// Computed once from the implementation; a change here would reshuffle every deployed key.
    static let pinnedHash: UInt64 = 13_056_364_838_513_417_823
    static let pinnedRanks: [[Int]] = [[3, 2, 1, 0], [1, 3, 0, 2], [0, 2, 3, 1], [0, 3, 2, 1]]
}
