package org.vcsdk

import java.io.File
import java.util.concurrent.TimeUnit

/** The real vc-ca and vc-server on 127.0.0.1 (tests/src/bin/vc-testbed.rs), stopped by [close]. */
class Testbed(users: String = "alice,bob", voucherCount: Int = 2) : AutoCloseable {
    private val process: Process
    val caUrl: String
    val caRoot: String
    val server: String
    val work: String
    val tokens: Map<String, String>
    val vouchers: List<String>

    init {
        val binary = System.getProperty("vcsdk.testbed") ?: "../../target/debug/vc-testbed"
        process = ProcessBuilder(binary, "--users", users, "--vouchers", "$voucherCount")
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start()
        val line = process.inputStream.bufferedReader().readLine()
            ?: error("vc-testbed did not start")
        caUrl = field(line, "ca_url")
        caRoot = field(line, "ca_root")
        server = field(line, "server")
        work = field(line, "work")
        tokens = users.split(",").associateWith { field(line, it) }
        vouchers = Regex("\"(vcv1\\.[0-9a-f]+)\"").findAll(line).map { it.groupValues[1] }.toList()
    }

    val rootPem: ByteArray get() = File(caRoot).readBytes()

    override fun close() {
        process.outputStream.close()
        if (!process.waitFor(60, TimeUnit.SECONDS)) process.destroyForcibly()
    }

    private companion object {
        /** A string field of the testbed's flat JSON line (tokens are fields named by user). */
        fun field(json: String, name: String): String =
            Regex("\"${Regex.escape(name)}\":\"([^\"]*)\"").find(json)?.groupValues?.get(1)
                ?: error("no $name in $json")
    }
}
