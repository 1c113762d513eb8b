#!/usr/bin/env node
// TimescaleDB for TickStock's conformance tests: PGlite's PostgreSQL 17.5 + TimescaleDB build
// (WASM, one backend in this process) served over the PostgreSQL wire protocol on loopback.
//
// It is @electric-sql/pglite-socket's server and connection handler with these changes, each
// because a real client breaks without it:
//   - SSLRequest / GSSENCRequest get 'N' (libpq's default sslmode=prefer waits forever otherwise);
//     a CancelRequest is answered by closing (PGlite cannot cancel).
//   - COPY ... FROM STDIN: PGlite cannot resume a COPY across calls, and stock pglite-socket hands
//     it every message separately, which kills the WASM backend for good. The handler answers the
//     query with a CopyInResponse itself, collects CopyData up to CopyDone/CopyFail and hands the
//     whole sequence to PGlite in one call, dropping PGlite's own CopyInResponse from the answer
//     (the idea of the open upstream PR electric-sql/pglite#1028).
//   - One backend session exists, so one client holds it at a time: later clients wait (FIFO) up
//     to --wait-timeout seconds, then get a FATAL 53300 naming the reason. A Terminate message
//     ends the client, never the backend. When a client goes, its session is reset (open
//     transaction rolled back, DISCARD ALL) so temp tables, SET and prepared statements of one
//     client never reach the next.
//   - A reopened data directory gets LOAD 'timescaledb' before the first client (its compressed
//     chunks otherwise read as empty); a new one gets CREATE EXTENSION timescaledb.
//   - Clients get PostgreSQL's session defaults (SESSION_DEFAULTS), not PGlite's boot settings.
//
// Usage: node server.mjs [--data-dir DIR] [--host 127.0.0.1] [--port 0] [--wait-timeout 30] [--debug]
// Prints one line "READY <host> <port> timescaledb=<version> postgres=<version>" once it accepts
// connections; stops cleanly (data directory closed) on SIGTERM or SIGINT.

import { parseArgs } from 'node:util'

import { PGlite } from '@electric-sql/pglite'
import { timescaledb } from '@electric-sql/pglite/timescaledb'
import { PGLiteSocketHandler, PGLiteSocketServer } from '@electric-sql/pglite-socket'

const PROTOCOL_3 = 196608
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]) // 'S'

// What every client starts with. PGlite boots its backend with server-side settings of its own
// (search_path=pg_catalog, client_min_messages=debug3, enable_seqscan=off) and fixes only
// search_path for itself; these are PostgreSQL's defaults, set again after each DISCARD ALL.
const SESSION_DEFAULTS = [
  'SET search_path TO "$user", public',
  'SET client_min_messages TO notice',
  'SET enable_seqscan TO on',
].join('; ')

// COPY <table> [(columns)] FROM STDIN ...: the only COPY form that reads from the client.
const COPY_FROM_STDIN =
  /^\s*copy\s+(?:"(?:[^"]|"")+"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[\w$]+))?\s*(?:\([^)]*\))?\s*from\s+stdin\b(.*)$/is
const BINARY_OPTION = /\bformat\s*'?binary\b|\bbinary\b/i

function log(...args) {
  console.log(new Date().toISOString(), ...args)
}

/** A backend message: type byte, int32 length (self-inclusive), body. */
function message(type, body) {
  const header = Buffer.alloc(5)
  header.write(type, 0, 'latin1')
  header.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}

/** A simple-protocol Query message. */
function simpleQuery(text) {
  return message('Q', Buffer.from(`${text}\0`, 'utf8'))
}

/** CopyInResponse for a COPY with no declared columns (clients read only the overall format). */
function copyInResponse(binary) {
  const body = Buffer.alloc(3)
  body.writeInt8(binary ? 1 : 0, 0)
  body.writeInt16BE(0, 1)
  return message('G', body)
}

/** ErrorResponse with severity, SQLSTATE and message fields. */
function errorResponse(severity, code, text) {
  const fields = [
    ['S', severity],
    ['V', severity],
    ['C', code],
    ['M', text],
  ]
  const parts = fields.map(([k, v]) => Buffer.from(`${k}${v}\0`, 'utf8'))
  return message('E', Buffer.concat([...parts, Buffer.from([0])]))
}

/** Yield [type, start, end] for each message in a buffer of backend messages. */
function* backendMessages(output) {
  for (let at = 0; at + 5 <= output.length; ) {
    const end = at + 1 + output.readInt32BE(at + 1)
    yield [String.fromCharCode(output[at]), at, end]
    at = end
  }
}

/** Remove the first message of `type` from a buffer of backend messages. */
function withoutFirst(output, type) {
  for (const [t, start, end] of backendMessages(output)) {
    if (t === type) return Buffer.concat([output.subarray(0, start), output.subarray(end)])
  }
  return output
}

/** The text of the first ErrorResponse in a buffer of backend messages, or null. */
function errorText(output) {
  for (const [t, start, end] of backendMessages(output)) {
    if (t === 'E') return output.toString('utf8', start + 5, end).replaceAll('\0', ' ').trim()
  }
  return null
}

/**
 * The one backend session: held by one client at a time, granted to waiting clients in arrival
 * order, reset between clients. The wait timeout runs only while a connected client holds the
 * session, not while the session of a client that has just left is being reset.
 */
class BackendSession {
  constructor(db, waitTimeoutMs) {
    this.db = db
    this.waitTimeoutMs = waitTimeoutMs
    this.holder = null
    this.resetting = false
    this.waiting = [] // {handler, grant, reject, timer}
  }

  /** Resolve once `handler` holds the session; reject after the wait timeout. */
  acquire(handler) {
    if (this.holder === null) {
      this.holder = handler
      return Promise.resolve()
    }
    return new Promise((grant, reject) => {
      const entry = { handler, grant, reject, timer: null }
      this.waiting.push(entry)
      if (!this.resetting) this.startTimer(entry)
      log(`client #${handler.handlerId} waits for the session (${this.waiting.length} waiting)`)
    })
  }

  startTimer(entry) {
    entry.timer = setTimeout(() => {
      this.waiting = this.waiting.filter((e) => e !== entry)
      entry.reject(
        new Error(
          `the server has one backend session and another client held it for more than ` +
            `${this.waitTimeoutMs / 1000} s (connect one client at a time)`,
        ),
      )
    }, this.waitTimeoutMs)
  }

  /** Note at once that `handler` is going, so clients arriving meanwhile wait for the reset, not a timeout. */
  leaving(handler) {
    if (this.holder === handler) this.resetting = true
  }

  /** Give the session up (or the place in the queue); reset it and grant it to the next client. */
  async release(handler) {
    const queued = this.waiting.find((e) => e.handler === handler)
    if (queued) {
      clearTimeout(queued.timer)
      this.waiting = this.waiting.filter((e) => e !== queued)
      return
    }
    if (this.holder !== handler) return
    this.resetting = true
    try {
      await this.reset()
    } catch (error) {
      log('FATAL: could not reset the session between clients:', error)
      process.exit(70)
    }
    this.resetting = false
    this.holder = null
    const next = this.waiting.shift()
    if (!next) return
    clearTimeout(next.timer)
    this.holder = next.handler
    for (const entry of this.waiting) if (entry.timer === null) this.startTimer(entry)
    log(`client #${next.handler.handlerId} gets the session`)
    next.grant()
  }

  /** End whatever the last client left open: an extended-protocol batch, a transaction, session state. */
  async reset() {
    // Raw protocol, not db.exec: PGlite tracks "in transaction" only for its own queries. ROLLBACK
    // outside a transaction is a warning, not an error.
    const output = await this.db.runExclusive(async () => {
      await this.db.execProtocolRaw(SYNC)
      await this.db.execProtocolRaw(simpleQuery('ROLLBACK'))
      const discarded = Buffer.from(await this.db.execProtocolRaw(simpleQuery('DISCARD ALL')))
      return Buffer.concat([discarded, Buffer.from(await this.db.execProtocolRaw(simpleQuery(SESSION_DEFAULTS)))])
    })
    const error = errorText(output)
    if (error) throw new Error(`session reset failed: ${error}`)
  }
}

/**
 * One client connection. pglite-socket's handler splits input by message length only (so an
 * SSLRequest is misread), forwards each message separately (so COPY dies) and lets several
 * data events work on one buffer at once; this one keeps the handler's socket plumbing
 * (attach, detach, idle timeout, events) and replaces the input side.
 */
class TimescaleSocketHandler extends PGLiteSocketHandler {
  constructor(options) {
    super(options)
    this.session = options.session
    this.pending = Buffer.alloc(0)
    this.pumping = false
    this.started = false // the startup message has been handled
    this.copy = null // Buffer[] of the COPY sequence being collected
    this.closing = false // Terminate or FATAL: read nothing more
    this.released = false
  }

  async handleData(chunk) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk
    if (this.pumping) return 0 // the running pump picks the new bytes up
    this.pumping = true
    try {
      while (this.socket && this.active && !this.closing) {
        const msg = this.nextMessage()
        if (msg === null) break
        await this.handleMessage(msg)
      }
    } finally {
      this.pumping = false
    }
    return 0
  }

  /** Cut the next complete message off the input, or null. */
  nextMessage() {
    const untyped = !this.started // before startup, messages have no type byte
    const headerLength = untyped ? 4 : 5
    if (this.pending.length < headerLength) return null
    const length = untyped ? this.pending.readInt32BE(0) : 1 + this.pending.readInt32BE(1)
    if (length < headerLength - 1 || this.pending.length < length) return null
    const msg = this.pending.subarray(0, length)
    this.pending = this.pending.subarray(length)
    return msg
  }

  async handleMessage(msg) {
    if (!this.started) return this.handleStartupPhase(msg)
    const type = String.fromCharCode(msg[0])
    if (this.copy !== null) {
      this.copy.push(msg)
      if (type === 'c' || type === 'f') {
        const sequence = Buffer.concat(this.copy)
        this.copy = null
        const output = await this.backend(sequence)
        return this.send(withoutFirst(output, 'G'))
      }
      return
    }
    switch (type) {
      case 'X': // Terminate ends this client, not the shared backend
        return this.close()
      case 'Q': {
        const match = COPY_FROM_STDIN.exec(cString(msg, 5))
        if (match) {
          this.copy = [msg]
          return this.send(copyInResponse(BINARY_OPTION.test(match[1])))
        }
        break
      }
      case 'P': {
        const name = cString(msg, 5)
        const query = cString(msg, 5 + Buffer.byteLength(name) + 1)
        if (COPY_FROM_STDIN.test(query)) {
          return this.fail('0A000', 'this test server supports COPY FROM STDIN in the simple query protocol only')
        }
        break
      }
    }
    return this.send(await this.backend(msg))
  }

  async handleStartupPhase(msg) {
    const code = msg.length >= 8 ? msg.readInt32BE(4) : 0
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) return this.send(Buffer.from('N'))
    if (code === CANCEL_REQUEST) return this.close()
    if (code !== PROTOCOL_3) return this.fail('08P01', `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}`)
    try {
      await this.session.acquire(this)
    } catch (error) {
      return this.fail('53300', error.message)
    }
    if (!this.socket || !this.active) return this.session.release(this)
    this.started = true
    return this.send(await this.backend(msg))
  }

  /** Run protocol bytes on PGlite and copy the answer out of its reused receive buffer. */
  async backend(bytes) {
    try {
      const output = await this.queryQueue.enqueue(this.handlerId, new Uint8Array(bytes))
      return Buffer.from(output)
    } catch (error) {
      // The WASM backend does not recover from a crash; a dead server is clearer than a broken one.
      log(`FATAL: PGlite failed on a ${String.fromCharCode(bytes[0])} message from client #${this.handlerId}:`, error)
      process.exit(70)
    }
  }

  send(bytes) {
    if (!bytes.length || !this.socket?.writable) return
    return new Promise((resolve) => this.socket.write(bytes, resolve))
  }

  async fail(code, text) {
    log(`client #${this.handlerId}: FATAL ${code} ${text}`)
    await this.send(errorResponse('FATAL', code, text))
    this.close()
  }

  /** Close the connection for good, as a backend does after Terminate or FATAL. */
  close() {
    this.closing = true
    this.session.leaving(this)
    const socket = this.socket
    socket?.end(() => socket.destroy())
  }

  async detach(close) {
    this.session.leaving(this)
    const result = await super.detach(close)
    if (!this.released) {
      this.released = true
      await this.session.release(this)
    }
    return result
  }
}

function cString(buffer, offset) {
  const end = buffer.indexOf(0, offset)
  return buffer.toString('utf8', offset, end === -1 ? buffer.length : end)
}

class TimescaleSocketServer extends PGLiteSocketServer {
  constructor(options) {
    super(options)
    this.session = new BackendSession(options.db, options.waitTimeoutMs)
  }

  /** Stop listening and drop every client (pglite-socket's stop leaves half-closed sockets open). */
  async stop() {
    for (const handler of this.handlers) handler.socket?.destroy()
    return super.stop()
  }

  async handleConnection(socket) {
    if (!this.active) return socket.destroy()
    const handler = new TimescaleSocketHandler({
      queryQueue: this.queryQueue,
      session: this.session,
      closeOnDetach: true,
      debug: this.debug,
    })
    this.handlers.add(handler)
    handler.addEventListener('close', () => this.handlers.delete(handler))
    handler.addEventListener('error', (event) => {
      this.handlers.delete(handler)
      if (this.debug) log(`client #${handler.handlerId}:`, event.detail?.message)
    })
    if (this.debug) log(`client #${handler.handlerId} connected from ${socket.remoteAddress}:${socket.remotePort}`)
    await handler.attach(socket)
  }
}

async function openDatabase(dataDir) {
  const db = await PGlite.create({ dataDir, extensions: { timescaledb } })
  const installed = await db.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
  await db.exec(installed.rows.length ? "LOAD 'timescaledb'" : 'CREATE EXTENSION timescaledb')
  await db.exec(SESSION_DEFAULTS)
  const versions = await db.query(
    "SELECT extversion AS ts, current_setting('server_version') AS pg FROM pg_extension WHERE extname = 'timescaledb'",
  )
  return { db, versions: versions.rows[0] }
}

async function main() {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string', default: 'memory://' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'wait-timeout': { type: 'string', default: '30' },
      debug: { type: 'boolean', default: false },
    },
  })
  const started = performance.now()
  const { db, versions } = await openDatabase(values['data-dir']).catch((error) => {
    throw new Error(`cannot open the database in ${values['data-dir']}: ${error.message ?? error}`, { cause: error })
  })
  const server = new TimescaleSocketServer({
    db,
    host: values.host,
    port: Number(values.port),
    maxConnections: 64, // accepted and queued for the session; only one is served at a time
    waitTimeoutMs: Number(values['wait-timeout']) * 1000,
    debug: values.debug,
  })
  await server.start()
  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    log(`${signal}: stopping`)
    await server.stop()
    await db.close()
    process.exit(0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  const seconds = ((performance.now() - started) / 1000).toFixed(2)
  const rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20)
  console.log(`READY ${values.host} ${server.port} timescaledb=${versions.ts} postgres=${versions.pg}`)
  log(`started in ${seconds} s, rss ${rssMiB} MiB, data dir ${values['data-dir']}`)
}

main().catch((error) => {
  log('FATAL:', error)
  process.exit(1)
})
