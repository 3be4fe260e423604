#!/usr/bin/env node
// Real-peer driver for Cloudflare's npm `web-bot-auth` (Web Bot Auth signer and verifier,
// over its dependency `http-message-sig`; both pinned by tests/interop/setup.sh).
//
//   target/interop/bin/peer-wba-js SUBCOMMAND < request.json
//   (or: AAUTH_INTEROP_WBA_NODE_DIR=target/interop/node-wba node tests/interop/js/wba.mjs SUBCOMMAND)
//
// Subcommands: version, sign, verify. One JSON object in on stdin, one JSON object out on
// stdout; contract in tests/interop/README.md ("Web Bot Auth peers"). No signing or
// verification code lives here: `sign` is the library's signatureHeaders() with
// signerFromJWK(), `verify` is the library's verify() with verifierFromJWK(), the key
// picked by the library's own JWK thumbprint (jwkToKeyID) of each directory key.
// Exit 0: success or a verdict; 1: the library threw while signing; 2: bad usage.

import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const EXPECTED = { 'web-bot-auth': '0.1.3', 'http-message-sig': '0.2.0' }
const here = path.dirname(fileURLToPath(import.meta.url))
const nodeDir =
    process.env.AAUTH_INTEROP_WBA_NODE_DIR ||
    path.resolve(here, '..', '..', '..', 'target', 'interop', 'node-wba')

class Usage extends Error {}

let loaded = null
const versions = {}
async function load() {
    if (loaded) return loaded
    const require = createRequire(path.join(nodeDir, 'package.json'))
    const resolved = {}
    for (const name of ['web-bot-auth', 'web-bot-auth/crypto', 'http-message-sig']) {
        try {
            resolved[name] = require.resolve(name)
        } catch {
            throw new Usage(
                `${name} not found under ${nodeDir}; run tests/interop/setup.sh or set AAUTH_INTEROP_WBA_NODE_DIR`,
            )
        }
    }
    for (const name of Object.keys(EXPECTED)) {
        const pkg = path.join(path.dirname(resolved[name]), '..', 'package.json')
        versions[name] = JSON.parse(fs.readFileSync(pkg, 'utf8')).version
    }
    loaded = {
        wba: require('web-bot-auth'),
        crypto: require('web-bot-auth/crypto'),
    }
    return loaded
}

function peerLabel() {
    const v = versions['web-bot-auth'] ?? '(not installed)'
    const h = versions['http-message-sig'] ?? '(not installed)'
    return `web-bot-auth ${v} / http-message-sig ${h}`
}

// The libraries read the clock through Date.now() (web-bot-auth's created/expires checks)
// and `new Date()` (http-message-sig's expires check): both are pinned to `now`.
async function withClock(nowSeconds, fn) {
    if (nowSeconds === undefined || nowSeconds === null) return await fn()
    if (!Number.isInteger(nowSeconds)) throw new Usage('now must be an integer (unix seconds)')
    const RealDate = globalThis.Date
    const pinned = nowSeconds * 1000
    globalThis.Date = class extends RealDate {
        constructor(...args) {
            if (args.length === 0) super(pinned)
            else super(...args)
        }
        static now() {
            return pinned
        }
    }
    try {
        return await fn()
    } finally {
        globalThis.Date = RealDate
    }
}

function integer(value, name) {
    if (!Number.isInteger(value)) throw new Usage(`'${name}' must be an integer (unix seconds)`)
    return value
}

// A covered component of the input: "name" or {"name", "key"} (RFC 9421 §2.1.2 `;key=`),
// in the form http-message-sig takes.
function component(c) {
    if (typeof c === 'string') return c
    if (c && typeof c === 'object' && typeof c.name === 'string' && typeof c.key === 'string')
        return { name: c.name, parameters: new Map([['key', c.key]]) }
    throw new Usage('a component is a string or {"name", "key"}')
}

async function cmdVersion() {
    try {
        await load()
    } catch {
        /* report what we can */
    }
    return { peer: peerLabel(), packages: { ...versions }, node: process.versions.node }
}

async function cmdSign(req) {
    const { wba, crypto } = await load()
    const { method = 'GET', url, headers = {}, private_jwk: jwk, created, expires, nonce, components } = req
    if (typeof url !== 'string') throw new Usage("sign needs 'url'")
    if (!jwk || typeof jwk !== 'object') throw new Usage("sign needs 'private_jwk'")
    if (typeof headers !== 'object' || Array.isArray(headers)) throw new Usage("'headers' must be an object")
    const params = {
        created: new Date(integer(created, 'created') * 1000),
        expires: new Date(integer(expires, 'expires') * 1000),
    }
    if (nonce !== undefined && nonce !== null) params.nonce = nonce
    if (components !== undefined && components !== null) {
        if (!Array.isArray(components)) throw new Usage("'components' must be a list")
        params.components = components.map(component)
    }
    // The library signs a fetch Request; a Signature-Agent it should cover is a header of it.
    const request = new Request(url, { method, headers })
    const signer = await crypto.signerFromJWK(jwk)
    const added = await wba.signatureHeaders(request, signer, params)
    const out = {}
    for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v
    for (const [k, v] of Object.entries(added)) out[k.toLowerCase()] = v
    return {
        headers: out,
        keyid: signer.keyid,
        function: 'web-bot-auth signatureHeaders(request, await signerFromJWK(jwk), {created, expires[, nonce, components]})',
    }
}

async function cmdVerify(req) {
    const { wba, crypto } = await load()
    const { method = 'GET', url, headers = {}, keys, now } = req
    if (typeof url !== 'string') throw new Usage("verify needs 'url'")
    if (!Array.isArray(keys)) throw new Usage("verify needs 'keys' (the directory's JWKs)")
    const request = new Request(url, { method, headers })
    // A deployment keeps the directory's keys by their thumbprint, the keyid signers send.
    const byKeyid = new Map()
    for (const jwk of keys) byKeyid.set(await wba.jwkToKeyID(jwk, crypto.helpers.WEBCRYPTO_SHA256, crypto.helpers.BASE64URL_DECODE), jwk)
    let keyid = null
    try {
        await withClock(now, () =>
            wba.verify(request, async (data, signature, params) => {
                keyid = params.keyid
                const jwk = byKeyid.get(params.keyid)
                if (!jwk) throw new Error(`unknown keyid ${params.keyid}`)
                return (await crypto.verifierFromJWK(jwk))(data, signature, params)
            }),
        )
    } catch (e) {
        return { verified: false, error: `${e?.name ?? 'Error'}: ${e?.message ?? e}`, keyid }
    }
    return { verified: true, keyid, function: 'web-bot-auth verify(request, verifier)' }
}

const HANDLERS = { version: cmdVersion, sign: cmdSign, verify: cmdVerify }

async function readStdin() {
    const chunks = []
    for await (const c of process.stdin) chunks.push(c)
    return Buffer.concat(chunks).toString('utf8')
}

async function main() {
    const sub = process.argv[2]
    let out
    let code = 0
    try {
        if (!(sub in HANDLERS)) throw new Usage(`subcommand must be one of ${Object.keys(HANDLERS).join(', ')}`)
        const text = await readStdin()
        let req = {}
        if (text.trim()) {
            try {
                req = JSON.parse(text)
            } catch (e) {
                throw new Usage(`stdin is not JSON: ${e.message}`)
            }
        }
        if (!req || typeof req !== 'object' || Array.isArray(req)) throw new Usage('stdin must hold one JSON object')
        if (sub !== 'version') {
            await load()
            for (const [name, want] of Object.entries(EXPECTED))
                if (versions[name] !== want) throw new Usage(`installed ${name} ${versions[name]}, this peer needs ${want}`)
        }
        out = await HANDLERS[sub](req)
    } catch (e) {
        if (e instanceof Usage) {
            out = { error: e.message, error_type: 'usage' }
            code = 2
        } else {
            out = { error: e?.message ?? String(e), error_type: e?.name ?? 'Error' }
            code = 1
        }
    }
    if (!('peer' in out)) out.peer = peerLabel()
    process.stdout.write(JSON.stringify(out) + '\n')
    process.exitCode = code
}

main()
