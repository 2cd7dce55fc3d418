package org.vcsdk

import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.io.File
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Records events (they arrive on library threads) in a thread-safe queue. */
class Recorder : ClientListener {
    val events = LinkedBlockingQueue<List<Any?>>()
    val threads: MutableSet<Long> = ConcurrentHashMap.newKeySet()

    private fun put(vararg event: Any?) {
        threads.add(Thread.currentThread().id)
        events.put(event.toList())
    }

    override fun onIncomingCall(callId: String, from: String) = put("incoming", callId, from)
    override fun onCallState(callId: String, state: CallState, reason: String?) = put("state", callId, state, reason)
    override fun onPresence(user: String, online: Boolean) = put("presence", user, online)
    override fun onLowBalance(callId: String, balance: Long, secondsLeft: Long) = put("low", callId, balance, secondsLeft)
    override fun onConnection(connected: Boolean, reason: String?) = put("connection", connected, reason)
    override fun onConferenceInvitation(conf: String, from: String) = put("invitation", conf, from)

    /** The next event of [kind] that [accept] takes, within [seconds]. */
    fun expect(kind: String, seconds: Long = 30, accept: (List<Any?>) -> Boolean = { true }): List<Any?> {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (true) {
            val left = deadline - System.nanoTime()
            check(left > 0) { "no $kind event within $seconds s" }
            val event = events.poll(left, TimeUnit.NANOSECONDS) ?: continue
            if (event[0] == kind && accept(event)) return event
        }
    }
}

class Frames : FrameListener {
    val frames = LinkedBlockingQueue<MediaFrame>()
    val closed = CountDownLatch(1)
    override fun onFrame(frame: MediaFrame) { frames.put(frame) }
    override fun onClosed() { closed.countDown() }
}

class CallTest {
    @Test
    fun `two Kotlin clients call each other with end-to-end encrypted media`() = runBlocking {
        Testbed().use { bed ->
            withTimeout(180_000) {
                assertEquals(2, version().count { it == '.' })
                val aliceId = enroll("${bed.work}/alice", bed.caUrl, bed.rootPem, bed.tokens.getValue("alice"), "alice")
                val bobId = enroll("${bed.work}/bob", bed.caUrl, bed.rootPem, bed.tokens.getValue("bob"), "bob")
                assertEquals("alice", aliceId.id())
                assertEquals(aliceId.info().serial, Identity.load("${bed.work}/alice").info().serial)

                // Refusals are exceptions with the kind, the code and the text.
                val used = assertThrows<VcException.Refused> {
                    runBlocking { enroll("${bed.work}/again", bed.caUrl, bed.rootPem, bed.tokens.getValue("alice"), "alice") }
                }
                assertEquals("token_used", used.code)
                assertThrows<VcException.Store> { Identity.load("${bed.work}/nobody") }

                val alice = connect(aliceId, bed.server, null)
                val bob = connect(bobId, bed.server, null)
                val aliceEvents = Recorder()
                val bobEvents = Recorder()
                val aliceSub = alice.addListener(aliceEvents)
                val bobSub = bob.addListener(bobEvents)
                alice.register(null)
                alice.subscribePresence()
                bob.register(null)
                aliceEvents.expect("presence") { it[1] == "bob" && it[2] == true }
                assertEquals(listOf("alice", "bob"), alice.activeUsers().map { it.user })

                val poor = assertThrows<VcException.Refused> { runBlocking { alice.call("bob") } }
                assertEquals("insufficient_credit", poor.code)
                val account = alice.redeemVoucher(bed.vouchers[0])
                assertEquals(1000L, account.balance)
                assertEquals("EUR", account.currency)

                // A call, accepted; both open the media at once.
                val callId = alice.call("bob")
                val incoming = bobEvents.expect("incoming") { it[1] == callId }
                assertEquals("alice", incoming[2])
                bob.answer(callId, Answer.ACCEPT)
                aliceEvents.expect("state") { it[1] == callId && it[2] == CallState.ACCEPTED }
                val options = defaultMediaOptions()
                assertThrows<VcException.InvalidArgument> {
                    runBlocking { alice.openMedia(callId, options.copy(level = SecurityLevel.OPEN)) }
                }
                val aliceMediaAsync = async { alice.openMedia(callId, options) }
                val bobMedia = bob.openMedia(callId, options)
                val aliceMedia = aliceMediaAsync.await()

                for (i in 0 until 30) {
                    val data = ByteArray(i * 997 % 20000) { k -> ((i + k) % 256).toByte() }
                    aliceMedia.send(Stream.VIDEO, data)
                    val frame = bobMedia.receive(10_000u)
                    assertNotNull(frame)
                    assertEquals(Stream.VIDEO, frame!!.stream)
                    assertArrayEquals(data, frame.data)
                    bobMedia.send(Stream.SIGNALLING, "$i".toByteArray())
                    assertArrayEquals("$i".toByteArray(), aliceMedia.receive(10_000u)!!.data)
                }
                assertNull(bobMedia.receive(50u))

                // A frame listener hears what follows, on a library thread.
                val frames = Frames()
                val frameSub = bobMedia.addFrameListener(frames)
                aliceMedia.rekey()
                for (i in 0 until 5) {
                    aliceMedia.send(Stream.AUDIO, ByteArray(160) { i.toByte() })
                    val got = frames.frames.poll(10, TimeUnit.SECONDS)
                    assertNotNull(got)
                    assertArrayEquals(ByteArray(160) { i.toByte() }, got!!.data)
                }
                val stats = aliceMedia.stats()
                assertEquals(PathKind.DIRECT, stats.path)
                assertEquals(35uL, stats.framesSent)
                assertTrue(stats.sendEpoch >= 1u)
                assertEquals(0uL, bobMedia.stats().authFailures)

                alice.hangup(callId)
                bobEvents.expect("state") { it[1] == callId && it[2] == CallState.ENDED }
                assertTrue(frames.closed.await(10, TimeUnit.SECONDS))
                assertThrows<VcException.Closed> { runBlocking { aliceMedia.send(Stream.AUDIO, ByteArray(4)) } }
                frameSub.cancel()

                val after = alice.account()
                assertEquals(callId, after.lastCall!!.callId)
                assertEquals(1000L - after.lastCall!!.cost, after.balance)

                // Events came on library threads, not on the test's.
                assertTrue(Thread.currentThread().id !in aliceEvents.threads + bobEvents.threads)
                aliceSub.cancel()
                bobSub.cancel()
                bob.disconnect()
                alice.disconnect()
                listOf(aliceMedia, bobMedia, alice, bob, aliceId, bobId).forEach { it.destroy() }
            }
        }
    }

    @Test
    fun `events reach several listeners concurrently and a cancelled one hears nothing more`() = runBlocking {
        Testbed("alice,bob").use { bed ->
            withTimeout(120_000) {
                val aliceId = enroll("${bed.work}/alice", bed.caUrl, bed.rootPem, bed.tokens.getValue("alice"), "alice")
                val bobId = enroll("${bed.work}/bob", bed.caUrl, bed.rootPem, bed.tokens.getValue("bob"), "bob")
                val alice = connect(aliceId, bed.server, null)
                val first = Recorder()
                val second = Recorder()
                val subFirst = alice.addListener(first)
                val subSecond = alice.addListener(second)
                alice.register(null)
                alice.subscribePresence()
                val bob = connect(bobId, bed.server, null)
                bob.register(null)
                first.expect("presence") { it[1] == "bob" && it[2] == true }
                second.expect("presence") { it[1] == "bob" && it[2] == true }
                subSecond.cancel()
                bob.disconnect()
                first.expect("presence") { it[1] == "bob" && it[2] == false }
                Thread.sleep(500)
                assertTrue(second.events.none { it[0] == "presence" && it[2] == false })
                assertNotEquals(0, first.threads.size)
                subFirst.cancel()
                alice.disconnect()
            }
        }
    }
}
