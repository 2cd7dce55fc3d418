package org.vcsdk

import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.condition.EnabledIfSystemProperty
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Per-frame cost of sending a 1200-byte frame through the Kotlin bindings (SFrame encryption and
 *  the UDP send), on a real call; run by scripts/bench-bindings.sh (-Dvcsdk.bench=true). */
class SendCost {
    @Test
    @EnabledIfSystemProperty(named = "vcsdk.bench", matches = "true")
    fun `per-frame cost of send`() = runBlocking {
        val frames = (System.getProperty("vcsdk.bench.frames") ?: "20000").toInt()
        val rounds = (System.getProperty("vcsdk.bench.rounds") ?: "5").toInt()
        Testbed().use { bed ->
            val alice = connect(enroll("${bed.work}/alice", bed.caUrl, bed.rootPem, bed.tokens.getValue("alice"), "alice"), bed.server, null)
            val bob = connect(enroll("${bed.work}/bob", bed.caUrl, bed.rootPem, bed.tokens.getValue("bob"), "bob"), bed.server, null)
            alice.register(null)
            bob.register(null)
            alice.redeemVoucher(bed.vouchers[0])
            val calls = LinkedBlockingQueue<String>()
            val sub = bob.addListener(object : ClientListener {
                override fun onIncomingCall(callId: String, from: String) { calls.put(callId) }
                override fun onCallState(callId: String, state: CallState, reason: String?) {}
                override fun onPresence(user: String, online: Boolean) {}
                override fun onLowBalance(callId: String, balance: Long, secondsLeft: Long) {}
                override fun onConnection(connected: Boolean, reason: String?) {}
                override fun onConferenceInvitation(conf: String, from: String) {}
            })
            val callId = alice.call("bob")
            check(calls.poll(30, TimeUnit.SECONDS) == callId)
            bob.answer(callId, Answer.ACCEPT)
            val options = defaultMediaOptions()
            val pending = async { alice.openMedia(callId, options) }
            val b = bob.openMedia(callId, options)
            val a = pending.await()
            // The receiver's SDK decrypts every frame and, as nobody takes them here, drops them once
            // its queue is full: the same work on that side as in the Rust figure.
            val frame = ByteArray(1200) { 7 }
            // The cost of one call through the bindings, for scale.
            run {
                val start = System.nanoTime()
                repeat(5000) { version() }
                println("kotlin version() ${(System.nanoTime() - start) / 5000} ns")
            }
            for ((name, send) in listOf<Pair<String, suspend () -> Unit>>(
                "kotlin send" to { a.send(Stream.VIDEO, frame) },
                "kotlin send_blocking" to { a.sendBlocking(Stream.VIDEO, frame) },
            )) {
                var best = Double.MAX_VALUE
                repeat(rounds) {
                    val start = System.nanoTime()
                    repeat(frames) { send() }
                    best = minOf(best, (System.nanoTime() - start).toDouble() / frames)
                }
                println("$name ${"%.0f".format(best)} ns")
            }
            check(b.stats().authFailures == 0uL)
            sub.cancel()
            alice.hangup(callId)
            alice.disconnect()
            bob.disconnect()
        }
    }
}
