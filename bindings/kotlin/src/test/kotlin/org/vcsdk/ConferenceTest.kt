package org.vcsdk

import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Queues a conference's events (they arrive on the conference's library thread). */
class ConferenceEvents : ConferenceListener {
    val events = LinkedBlockingQueue<ConferenceEvent>()
    override fun onEvent(event: ConferenceEvent) { events.put(event) }

    /** The next event [accept] takes, within [seconds]. */
    fun expect(seconds: Long = 30, accept: (ConferenceEvent) -> Boolean): ConferenceEvent {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (true) {
            val left = deadline - System.nanoTime()
            check(left > 0) { "the conference event did not come within $seconds s" }
            val event = events.poll(left, TimeUnit.NANOSECONDS) ?: continue
            if (accept(event)) return event
        }
    }
}

class ConferenceTest {
    /** Sends [data] from [source] until [receiver] has it from [sender]. */
    private suspend fun deliver(source: Conference, receiver: Conference, sender: String, data: ByteArray) {
        repeat(100) {
            source.send(Stream.AUDIO, data)
            var frame = receiver.receive(200u)
            while (frame != null) {
                if (frame.member == sender && frame.data.contentEquals(data)) return
                frame = receiver.receive(50u)
            }
        }
        error("$sender's frame never reached the receiver")
    }

    @Test
    fun `three Kotlin clients hold a conference that rekeys on every change`() = runBlocking {
        Testbed("alice,bob,carol", voucherCount = 3).use { bed ->
            withTimeout(180_000) {
                val names = listOf("alice", "bob", "carol")
                val clients = names.mapIndexed { i, name ->
                    val id = enroll("${bed.work}/$name", bed.caUrl, bed.rootPem, bed.tokens.getValue(name), name)
                    val client = connect(id, bed.server, null)
                    client.register(null)
                    client.redeemVoucher(bed.vouchers[i])
                    client
                }
                val (alice, bob, carol) = clients
                val recorders = clients.map { Recorder() }
                val subs = clients.zip(recorders).map { (c, r) -> c.addListener(r) }.toMutableList()

                val conf = alice.createConference(null, true)
                val events = ConferenceEvents()
                subs += conf.addListener(events)
                events.expect { it is ConferenceEvent.Epoch && it.epoch >= 1u }
                conf.invite("bob")
                val invitation = recorders[1].expect("invitation")
                assertEquals(conf.id(), invitation[1])
                assertEquals("alice", invitation[2])
                val b = bob.joinConference(conf.id(), true)
                conf.invite("carol")
                recorders[2].expect("invitation")
                val c = carol.joinConference(conf.id(), true)
                events.expect { it is ConferenceEvent.Epoch && it.roster == names }
                assertEquals(names, c.roster().map { it.id })

                deliver(conf, b, "alice", "to bob".toByteArray())
                deliver(b, c, "bob", "to carol".toByteArray())
                deliver(c, conf, "carol", "to alice".toByteArray())

                // Not the moderator: refused with the server's code.
                val level3 = defaultConferencePolicy(SecurityLevel.POST_QUANTUM, ConferenceMode.MODERATION)
                val refused = assertThrows<VcException.Refused> { runBlocking { b.setPolicy(level3) } }
                assertEquals("conf_forbidden", refused.code)
                conf.setPolicy(level3)
                val epoch = events.expect { it is ConferenceEvent.Epoch && it.policy.level == SecurityLevel.POST_QUANTUM }
                assertNotNull(epoch)

                // Carol leaves; alice and bob rekey without her.
                c.leave()
                events.expect { it is ConferenceEvent.Left && it.member == "carol" }
                events.expect { it is ConferenceEvent.Epoch && it.roster == listOf("alice", "bob") }
                assertTrue(c.ended() != null)
                deliver(conf, b, "alice", "after carol".toByteArray())
                assertEquals(0uL, conf.stats().authFailures)
                b.leave()
                conf.leave()
                subs.forEach { it.cancel() }
                clients.forEach { it.disconnect() }
                listOf(conf, b, c).forEach { it.destroy() }
            }
        }
    }
}
