// Enrolls (first run) or loads an identity, registers, calls a user and streams a file over the
// call's end-to-end encrypted media, then prints the media statistics and the balance. The receiver
// can be `vc listen --save DIR`, the C sample or the Python sample's peer: the file goes as
// `offset (8 bytes, big-endian) || bytes` frames on the video stream, announced and confirmed with
// JSON on the signalling stream.
//
//   java -jar vcsdk-sample.jar --dir alice-id --server 127.0.0.1:7443 \
//       --ca-url https://127.0.0.1:8443 --ca-root ca/root.pem --token TOKEN --id alice \
//       [--voucher CODE] bob clip.bin
package org.vcsdk.samples

import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import org.vcsdk.CallState
import org.vcsdk.ClientListener
import org.vcsdk.Identity
import org.vcsdk.MediaSession
import org.vcsdk.Stream
import org.vcsdk.VcException
import org.vcsdk.connect
import org.vcsdk.defaultMediaOptions
import org.vcsdk.enroll
import org.vcsdk.formatMoney
import java.io.File
import java.nio.ByteBuffer
import java.security.MessageDigest
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess

/** Call states, handed from the library's event thread to the app through a queue. */
class Events : ClientListener {
    val states = LinkedBlockingQueue<Pair<String, CallState>>()
    override fun onIncomingCall(callId: String, from: String) {}
    override fun onCallState(callId: String, state: CallState, reason: String?) {
        println("call $callId: ${state.name.lowercase()}${reason?.let { " - $it" } ?: ""}")
        states.put(callId to state)
    }
    override fun onPresence(user: String, online: Boolean) {}
    override fun onLowBalance(callId: String, balance: Long, secondsLeft: Long) =
        println("low balance: $balance minor units left, about $secondsLeft s")
    override fun onConnection(connected: Boolean, reason: String?) =
        println(if (connected) "reconnected" else "disconnected ($reason); reconnecting")
    override fun onConferenceInvitation(conf: String, from: String) =
        println("invited to conference $conf by $from (not taken by this sample)")
}

private fun hex(bytes: ByteArray) = bytes.joinToString("") { "%02x".format(it) }

/** Streams [file]; true when the receiver saved identical bytes. */
suspend fun streamFile(media: MediaSession, file: File, frameSize: Int, rate: Int): Boolean {
    val data = file.readBytes()
    val digest = hex(MessageDigest.getInstance("SHA-256").digest(data))
    val announce = """{"type":"file","name":"${file.name}","size":${data.size},"sha256":"$digest",""" +
        """"stream":"video","frame_size":$frameSize}"""
    media.send(Stream.SIGNALLING, announce.toByteArray())
    for (offset in data.indices step frameSize) {
        val end = minOf(offset + frameSize, data.size)
        val frame = ByteBuffer.allocate(8 + end - offset).putLong(offset.toLong()).put(data, offset, end - offset)
        media.send(Stream.VIDEO, frame.array())
        delay(1000L / rate)
    }
    media.send(Stream.SIGNALLING, """{"type":"done"}""".toByteArray())
    repeat(30) {
        val frame = media.receive(1000u) ?: return@repeat
        if (frame.stream != Stream.SIGNALLING) return@repeat
        val verdict = String(frame.data)
        val saved = Regex("\"sha256\":\"([0-9a-f]+)\"").find(verdict)?.groupValues?.get(1)
        return if (verdict.contains("\"saved\"") && saved == digest) {
            println("sent ${file.name}: ${data.size} bytes; the receiver saved identical bytes (SHA-256 $digest)")
            true
        } else {
            println("the receiver did not save the file: $verdict")
            false
        }
    }
    println("no verdict from the receiver")
    return false
}

fun main(argv: Array<String>): Unit = runBlocking {
    val options = mutableMapOf<String, String>()
    val positional = mutableListOf<String>()
    var i = 0
    while (i < argv.size) {
        if (argv[i].startsWith("--") && i + 1 < argv.size) { options[argv[i].removePrefix("--")] = argv[i + 1]; i += 2 }
        else { positional += argv[i]; i++ }
    }
    val dir = options["dir"]
    val server = options["server"]
    if (dir == null || server == null || positional.size != 2) {
        System.err.println("usage: vcsdk-sample --dir DIR --server HOST:PORT [--ca-url URL --ca-root FILE --token T --id ID] [--voucher CODE] USER FILE")
        exitProcess(2)
    }
    val (user, path) = positional
    try {
        val me = try {
            Identity.load(dir)
        } catch (e: VcException.Store) {
            val root = File(options["ca-root"] ?: error("no identity in $dir: give --ca-url, --ca-root, --token, --id")).readBytes()
            enroll(dir, options.getValue("ca-url"), root, options.getValue("token"), options.getValue("id"))
                .also { println("enrolled as ${it.id()}") }
        }
        val client = connect(me, server, null)
        val events = Events()
        val subscription = client.addListener(events)
        if (!client.isRegistered()) client.register(null).also { println("registered ${me.id()}") }
        options["voucher"]?.let { client.redeemVoucher(it) }
        client.account().let { println("balance: ${formatMoney(it.balance, it.currency)}") }
        var callId: String? = null
        for (attempt in 0 until 120) {
            try { callId = client.call(user); break } catch (e: VcException.Refused) {
                if (e.code != "user_offline") throw e
                delay(500)
            }
        }
        val call = callId ?: error("$user did not come online")
        println("calling $user (call $call)")
        while (true) {
            val (id, state) = events.states.poll(60, TimeUnit.SECONDS) ?: error("no answer")
            if (id != call) continue
            if (state == CallState.ACCEPTED) break
            if (state != CallState.RINGING) error("the call did not go through")
        }
        val media = client.openMedia(call, defaultMediaOptions())
        val ok = streamFile(media, File(path), 16384, 60)
        val s = media.stats()
        println("media (${s.path.name.lowercase()}): ${s.framesSent} frames sent (${s.bytesSent} bytes, ${s.packetsSent} packets); " +
            "${s.framesReceived} received; refused: ${s.replaysRefused} replays, ${s.authFailures} forged")
        client.hangup(call)
        delay(500)
        val account = client.account()
        println("balance: ${formatMoney(account.balance, account.currency)}" + (account.lastCall?.let { " (the call cost ${formatMoney(it.cost, account.currency)})" } ?: ""))
        subscription.cancel()
        client.disconnect()
        exitProcess(if (ok) 0 else 1)
    } catch (e: VcException) {
        System.err.println("${e::class.simpleName}: ${e.message}")
        exitProcess(1)
    }
}
