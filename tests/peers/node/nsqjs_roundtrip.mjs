#!/usr/bin/env node
// Round trip of N messages through nsqd with nsqjs (the NSQ Node.js client), unchanged.
//
// nsq.Writer publishes N distinct bodies (one PUB each); nsq.Reader (nsqdTCPAddresses, no lookupd)
// requeues every message on its first attempt (REQ with delay 0, no backoff) and finishes it on
// the second. Exit 0 only if all N distinct bodies were finished, each at attempts 2, within the
// timeout, and (with a MODE) both connections negotiated the feature in IDENTIFY.
//
// MODE (default plain) is used by both the Writer and the Reader:
//   plain    nothing
//   tls      tls: true, the server certificate verified against --ca
//   snappy   snappy: true
//   deflate  deflate: true
//
// usage: nsqjs_roundtrip.mjs NSQD_TCP_ADDRESS [--mode=MODE] [--ca=CA_PEM] [--count=N]
//                            [--timeout=SECONDS] [--topic=T] [--channel=C]

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const nsq = require('nsqjs')
const nsqjsVersion = require('nsqjs/package.json').version

const positional = []
const options = {
  mode: 'plain',
  ca: null,
  count: '1000',
  timeout: '60',
  topic: 'nsqjs_roundtrip',
  channel: 'nsqjs',
}
for (const arg of process.argv.slice(2)) {
  const match = /^--([a-z]+)=(.*)$/.exec(arg)
  if (match) {
    if (!(match[1] in options)) {
      console.error(`unknown option ${arg}`)
      process.exit(2)
    }
    options[match[1]] = match[2]
  } else {
    positional.push(arg)
  }
}
if (positional.length !== 1) {
  console.error('usage: nsqjs_roundtrip.mjs NSQD_TCP_ADDRESS [--mode=plain|tls|snappy|deflate]')
  process.exit(2)
}
const address = positional[0]
const separator = address.lastIndexOf(':')
const host = address.slice(0, separator)
const port = Number(address.slice(separator + 1))
const count = Number(options.count)
const timeoutSeconds = Number(options.timeout)

const features = {}
let featureKey = null
switch (options.mode) {
  case 'plain':
    break
  case 'tls':
    if (!options.ca) {
      console.error('--mode=tls needs --ca')
      process.exit(2)
    }
    Object.assign(features, { tls: true, tlsVerification: true, ca: readFileSync(options.ca) })
    featureKey = 'tls_v1'
    break
  case 'snappy':
    Object.assign(features, { snappy: true })
    featureKey = 'snappy'
    break
  case 'deflate':
    Object.assign(features, { deflate: true, deflateLevel: 6 })
    featureKey = 'deflate'
    break
  default:
    console.error(`unknown mode ${options.mode}`)
    process.exit(2)
}

const bodies = []
for (let index = 0; index < count; index++) {
  bodies.push(`nsqjs-${String(index).padStart(5, '0')}`)
}
const expected = new Set(bodies)
const requeued = new Set()
const finished = new Map() // body -> attempts at FIN
const unexpected = []
const errors = []
let publishedOk = 0
let result = null
const started = Date.now()

const writer = new nsq.Writer(host, port, { ...features })
const reader = new nsq.Reader(options.topic, options.channel, {
  nsqdTCPAddresses: [address],
  maxInFlight: 100,
  maxAttempts: 0,
  requeueDelay: 0,
  ...features,
})

// nsqjs keeps each connection's IDENTIFY response on its state machine.
function identifyResponses() {
  const conns = reader.readerRdy.connections.map((connectionRdy) => connectionRdy.conn)
  if (writer.conn) conns.push(writer.conn)
  return conns.map((conn) => conn.statemachine && conn.statemachine.identifyResponse)
}

let negotiated = []
function finish(outcome) {
  if (result !== null) return
  result = outcome
  negotiated = identifyResponses().map((response) =>
    featureKey === null ? 'plain' : response && response[featureKey] ? featureKey : 'NOT NEGOTIATED'
  )
  clearTimeout(timer)
  // Give the last FINs time to leave the socket buffers before closing.
  setTimeout(() => {
    reader.close()
    writer.close()
    setTimeout(report, 300)
  }, 300)
}

function maybeDone() {
  if (publishedOk === count && finished.size === count) finish('done')
}

const timer = setTimeout(() => finish(`timeout after ${timeoutSeconds} s`), timeoutSeconds * 1000)

reader.on('message', (message) => {
  const body = message.body.toString()
  if (!expected.has(body)) {
    unexpected.push(body)
    message.finish()
    return
  }
  if (message.attempts === 1) {
    requeued.add(body)
    message.requeue(0, false)
    return
  }
  if (finished.has(body)) unexpected.push(body)
  finished.set(body, message.attempts)
  message.finish()
  maybeDone()
})
reader.on('error', (error) => errors.push(`reader: ${error}`))
writer.on('error', (error) => errors.push(`writer: ${error}`))

writer.on('ready', () => {
  for (const body of bodies) {
    writer.publish(options.topic, body, (error) => {
      if (error) {
        errors.push(`publish: ${error}`)
        finish(`publish failed: ${error}`)
      } else {
        publishedOk += 1
        maybeDone()
      }
    })
  }
})

reader.connect()
writer.connect()

function report() {
  const wrongAttempts = [...finished].filter(([, attempts]) => attempts !== 2)
  const missing = bodies.filter((body) => !finished.has(body))
  console.log(
    `nsqjs ${nsqjsVersion} ${options.mode} round trip: result=${result} ` +
      `published_ok=${publishedOk}/${count} requeued=${requeued.size} finished=${finished.size} ` +
      `wrong_attempts=${wrongAttempts.length} missing=${missing.length} ` +
      `unexpected=${unexpected.length} errors=${errors.length} ` +
      `negotiated=${JSON.stringify(negotiated)} elapsed=${((Date.now() - started) / 1000).toFixed(2)}s`
  )
  const ok =
    result === 'done' &&
    publishedOk === count &&
    requeued.size === count &&
    wrongAttempts.length === 0 &&
    missing.length === 0 &&
    unexpected.length === 0 &&
    errors.length === 0 &&
    negotiated.length === 2 &&
    negotiated.every((kind) => kind !== 'NOT NEGOTIATED')
  if (!ok) {
    if (wrongAttempts.length) console.log('wrong attempts (first 10):', wrongAttempts.slice(0, 10))
    if (missing.length) console.log('missing (first 10):', missing.slice(0, 10))
    if (unexpected.length) console.log('unexpected (first 10):', unexpected.slice(0, 10))
    if (errors.length) console.log('errors (first 10):', errors.slice(0, 10))
  }
  process.exit(ok ? 0 : 1)
}
