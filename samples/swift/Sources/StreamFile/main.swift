// Enrolls (first run) or loads an identity, registers, calls a user and streams a file over the
// call's end-to-end encrypted media, then prints the media statistics and the balance; the same
// file format as `vc call --send` (the receiver can be `vc listen --save DIR`).
import CryptoKit
import Foundation
import VcSdk

/// Call states from the library's event thread, awaited by the app.
final class Events: ClientListener, @unchecked Sendable {
    private let lock = NSLock()
    private var states: [(String, CallState)] = []

    func onIncomingCall(callId: String, from: String) {}
    func onCallState(callId: String, state: CallState, reason: String?) {
        print("call \(callId): \(state)\(reason.map { " - \($0)" } ?? "")")
        lock.lock(); states.append((callId, state)); lock.unlock()
    }
    func onPresence(user: String, online: Bool) {}
    func onLowBalance(callId: String, balance: Int64, secondsLeft: Int64) {
        print("low balance: \(balance) minor units left, about \(secondsLeft) s")
    }
    func onConnection(connected: Bool, reason: String?) {
        print(connected ? "reconnected" : "disconnected (\(reason ?? "")); reconnecting")
    }
    func onConferenceInvitation(conf: String, from: String) {
        print("invited to conference \(conf) by \(from) (not taken by this sample)")
    }

    /// Accepted → true; a final state → false.
    func outcome(of callId: String) async throws -> Bool {
        for _ in 0..<600 {
            lock.lock(); let seen = states.filter { $0.0 == callId }.map { $0.1 }; lock.unlock()
            if seen.contains(.accepted) { return true }
            if seen.contains(where: { $0 != .ringing && $0 != .accepted }) { return false }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return false
    }
}

func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

func stream(_ media: MediaSession, file: URL, frameSize: Int = 16384) async throws -> Bool {
    let data = try Data(contentsOf: file)
    let digest = hex(SHA256.hash(data: data))
    let announce = #"{"type":"file","name":"\#(file.lastPathComponent)","size":\#(data.count),"sha256":"\#(digest)","stream":"video","frame_size":\#(frameSize)}"#
    try await media.send(stream: .signalling, data: Data(announce.utf8))
    var offset = 0
    while offset < data.count {
        let end = min(offset + frameSize, data.count)
        var frame = Data(withUnsafeBytes(of: UInt64(offset).bigEndian) { Data($0) })
        frame.append(data[offset..<end])
        try await media.send(stream: .video, data: frame)
        try await Task.sleep(nanoseconds: 16_000_000)
        offset = end
    }
    try await media.send(stream: .signalling, data: Data(#"{"type":"done"}"#.utf8))
    for _ in 0..<30 {
        guard let frame = try await media.receive(timeoutMs: 1000), frame.stream == .signalling else { continue }
        let verdict = String(decoding: frame.data, as: UTF8.self)
        let saved = verdict.contains(#""saved""#) && verdict.contains(digest)
        print(saved ? "sent \(file.lastPathComponent): \(data.count) bytes; the receiver saved identical bytes"
                    : "the receiver did not save the file: \(verdict)")
        return saved
    }
    return false
}

func main() async -> Int32 {
    var options: [String: String] = [:]
    var positional: [String] = []
    var args = CommandLine.arguments.dropFirst()
    while let arg = args.popFirst() {
        if arg.hasPrefix("--"), let value = args.popFirst() { options[String(arg.dropFirst(2))] = value } else { positional.append(arg) }
    }
    guard let dir = options["dir"], let server = options["server"], positional.count == 2 else {
        print("usage: StreamFile --dir DIR --server HOST:PORT [--ca-url URL --ca-root FILE --token T --id ID] [--voucher CODE] USER FILE")
        return 2
    }
    do {
        let me: Identity
        do {
            me = try Identity.load(dir: dir)
        } catch VcError.Store {
            let root = try Data(contentsOf: URL(fileURLWithPath: options["ca-root"] ?? ""))
            me = try await enroll(dir: dir, caUrl: options["ca-url"] ?? "", rootPem: root,
                                  token: options["token"] ?? "", clientId: options["id"] ?? "")
            print("enrolled as \(me.id())")
        }
        let client = try await connect(identity: me, server: server, serverName: nil)
        let events = Events()
        let subscription = client.addListener(listener: events)
        if !client.isRegistered() { try await client.register(termsVersion: nil) }
        if let voucher = options["voucher"] { _ = try await client.redeemVoucher(voucher: voucher) }
        let callId = try await client.call(user: positional[0])
        print("calling \(positional[0]) (call \(callId))")
        guard try await events.outcome(of: callId) else { print("the call did not go through"); return 1 }
        let media = try await client.openMedia(callId: callId, options: defaultMediaOptions())
        let ok = try await stream(media, file: URL(fileURLWithPath: positional[1]))
        let s = media.stats()
        print("media (\(s.path)): \(s.framesSent) frames sent (\(s.bytesSent) bytes); \(s.framesReceived) received; \(s.authFailures) forged refused")
        try await client.hangup(callId: callId)
        let account = try await client.account()
        print("balance: \(formatMoney(minor: account.balance, currency: account.currency))")
        subscription.cancel()
        try await client.disconnect()
        return ok ? 0 : 1
    } catch let error as VcError {
        print("\(error)")
        return 1
    } catch {
        print("\(error)")
        return 1
    }
}

exit(await main())
