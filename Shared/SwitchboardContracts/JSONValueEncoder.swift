import Foundation

/// Encodes a value straight to the `JSONValue` that `JSONEncoder` and decoding its text would give,
/// without the text in between: frame payloads are encoded once per frame, and chunks are the busiest
/// frames there are. Values `JSONEncoder` writes in a form of its own (dates, data, URLs, decimals)
/// still go through it, so the result is the same.
public struct JSONValueEncoder: Sendable {
    public init() {}

    public func encode(_ value: some Encodable) throws -> JSONValue {
        let slot = Slot()
        try slot.store(value, codingPath: [])
        return slot.value
    }
}

/// Where one value is being written; containers hold the slots of their members until the end.
private final class Slot {
    enum Content {
        case value(JSONValue)
        case object([String: Slot])
        case array([Slot])
    }

    var content = Content.value(.null)

    var value: JSONValue {
        switch content {
        case .value(let value): value
        case .object(let members): .object(members.mapValues(\.value))
        case .array(let elements): .array(elements.map(\.value))
        }
    }

    func store(_ value: some Encodable, codingPath: [any CodingKey]) throws {
        switch value {
        case let value as JSONValue:
            content = .value(value)
        case is Date, is Data, is URL, is Decimal:
            content = .value(
                try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode([value])).arrayValue![0])
        default:
            try value.encode(to: SlotEncoder(slot: self, codingPath: codingPath))
        }
    }

    /// A new member of this object (content is cleared while the members change, so they are not copied).
    func member(_ key: String) -> Slot {
        let slot = Slot()
        if case .object(var members) = content {
            content = .value(.null)
            members[key] = slot
            content = .object(members)
        }
        return slot
    }

    func append() -> Slot {
        let slot = Slot()
        if case .array(var elements) = content {
            content = .value(.null)
            elements.append(slot)
            content = .array(elements)
        }
        return slot
    }

    func makeObject() {
        if case .object = content { return }
        content = .object([:])
    }

    func makeArray() {
        if case .array = content { return }
        content = .array([])
    }

    /// A float as `JSONEncoder` writes it (its shortest decimal form), read back as a double.
    static func number(_ value: Float, codingPath: [any CodingKey]) throws -> JSONValue {
        try number(Double(value.description) ?? Double(value), codingPath: codingPath)
    }

    static func number(_ value: Double, codingPath: [any CodingKey]) throws -> JSONValue {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
        }
        return .number(value)
    }
}

private struct SlotEncoder: Encoder {
    let slot: Slot
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        slot.makeObject()
        return KeyedEncodingContainer(KeyedSlotContainer<Key>(slot: slot, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        slot.makeArray()
        return UnkeyedSlotContainer(slot: slot, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleSlotContainer(slot: slot, codingPath: codingPath)
    }
}

private struct KeyedSlotContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let slot: Slot
    let codingPath: [any CodingKey]

    private func put(_ value: JSONValue, _ key: Key) { slot.member(key.stringValue).content = .value(value) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        put(try Slot.number(value, codingPath: codingPath + [key]), key)
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.number(Double(value)), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        put(try Slot.number(value, codingPath: codingPath + [key]), key)
    }
    mutating func encode(_ value: some Encodable, forKey key: Key) throws {
        try slot.member(key.stringValue).store(value, codingPath: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        SlotEncoder(slot: slot.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        SlotEncoder(slot: slot.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        SlotEncoder(slot: slot.member("super"), codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        SlotEncoder(slot: slot.member(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedSlotContainer: UnkeyedEncodingContainer {
    let slot: Slot
    let codingPath: [any CodingKey]
    var count: Int {
        if case .array(let elements) = slot.content { return elements.count }
        return 0
    }

    mutating func encodeNil() throws { slot.append().content = .value(.null) }
    mutating func encode(_ value: Bool) throws { slot.append().content = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { slot.append().content = .value(.string(value)) }
    mutating func encode(_ value: Double) throws {
        slot.append().content = .value(try Slot.number(value, codingPath: codingPath))
    }
    mutating func encode(_ value: Int) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int8) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int16) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int32) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int64) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt8) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt16) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt32) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt64) throws { slot.append().content = .value(.number(Double(value))) }
    mutating func encode(_ value: Float) throws {
        slot.append().content = .value(try Slot.number(value, codingPath: codingPath))
    }
    mutating func encode(_ value: some Encodable) throws { try slot.append().store(value, codingPath: codingPath) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        SlotEncoder(slot: slot.append(), codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        SlotEncoder(slot: slot.append(), codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { SlotEncoder(slot: slot.append(), codingPath: codingPath) }
}

private struct SingleSlotContainer: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { slot.content = .value(.null) }
    mutating func encode(_ value: Bool) throws { slot.content = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { slot.content = .value(.string(value)) }
    mutating func encode(_ value: Double) throws {
        slot.content = .value(try Slot.number(value, codingPath: codingPath))
    }
    mutating func encode(_ value: Int) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int8) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int16) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int32) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: Int64) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt8) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt16) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt32) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: UInt64) throws { slot.content = .value(.number(Double(value))) }
    mutating func encode(_ value: Float) throws {
        slot.content = .value(try Slot.number(value, codingPath: codingPath))
    }
    mutating func encode(_ value: some Encodable) throws { try slot.store(value, codingPath: codingPath) }
}
