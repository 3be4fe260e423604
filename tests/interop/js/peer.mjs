#!/usr/bin/env node
// Real-peer driver for npm @hellocoop/httpsig (pinned by tests/interop/setup.sh).
//
//   target/interop/bin/peer-js SUBCOMMAND < request.json
//   (or: AAUTH_INTEROP_NODE_DIR=target/interop/node node tests/interop/js/peer.mjs SUBCOMMAND)
//
// Subcommands: version, sign, parse-challenge, verify-resource-token, verify.
// One JSON object in on stdin, one JSON object out on stdout; contract in
// tests/interop/README.md. No signing or verification code lives here: `sign`
// is the library's fetch() with dryRun, `verify` is the library's verify().
// Exit 0: success / unsupported / verdict; 1: the library threw; 2: bad usage.

import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const EXPECTED_VERSION = '2.2.0'
const here = path.dirname(fileURLToPath(import.meta.url))
const nodeDir =
    process.env.AAUTH_INTEROP_NODE_DIR ||
    path.resolve(here, '..', '..', '..', 'target', 'interop', 'node')

class Usage extends Error {}
class Unsupported extends Error {}

let lib = null
let libVersion = null
function load() {
    if (lib) return lib
    const require = createRequire(path.join(nodeDir, 'package.json'))
    let main
    try {
        main = require.resolve('@hellocoop/httpsig')
    } catch {
        throw new Usage(
            `@hellocoop/httpsig not found under ${nodeDir}; run tests/interop/setup.sh ` +
                'or set AAUTH_INTEROP_NODE_DIR',
        )
    }
    const pkg = JSON.parse(
        fs.readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8'),
    )
    libVersion = pkg.version
    lib = require('@hellocoop/httpsig')
    return lib
}

function peerLabel() {
    return `@hellocoop/httpsig ${libVersion ?? '(not installed)'}`
}

async function withClock(nowSeconds, fn) {
    if (nowSeconds === undefined || nowSeconds === null) return await fn()
    if (!Number.isInteger(nowSeconds)) throw new Usage('created/now must be an integer')
    const real = Date.now
    Date.now = () => nowSeconds * 1000 // the library reads created/now from Date.now()
    try {
        return await fn()
    } finally {
        Date.now = real
    }
}

function lowerHeaders(h) {
    const out = {}
    for (const [k, v] of Object.entries(h || {})) {
        const lk = k.toLowerCase()
        if (!(lk in out)) out[lk] = v
    }
    return out
}

function cmdVersion() {
    try {
        load()
    } catch {
        /* report what we can */
    }
    return {
        peer: peerLabel(),
        packages: { '@hellocoop/httpsig': libVersion },
        node: process.versions.node,
    }
}

async function cmdSign(req) {
    const httpsig = load()
    const {
        method = 'GET',
        url,
        headers = {},
        body = null,
        private_jwk: privateJwk,
        scheme = 'hwk',
        created,
        components,
        content_digest: contentDigest,
    } = req
    if (typeof url !== 'string') throw new Usage("sign needs 'url'")
    if (!privateJwk || typeof privateJwk !== 'object') throw new Usage("sign needs 'private_jwk'")
    if (body !== null && typeof body !== 'string') throw new Usage("'body' must be a string or null")
    const notes = []
    const signingKey = { ...privateJwk }
    if (!signingKey.alg && signingKey.kty === 'OKP' && signingKey.crv === 'Ed25519') {
        // The library refuses a signing JWK without alg ("JWK missing required
        // member: alg"); the RFC 9421 test key has none.
        signingKey.alg = 'Ed25519'
        notes.push('added alg="Ed25519" to private_jwk: @hellocoop/httpsig requires alg on the signing JWK')
    }
    let signatureKey
    if (scheme === 'hwk') signatureKey = { type: 'hwk' }
    else if (scheme === 'jwt') {
        if (typeof req.jwt !== 'string') throw new Usage("scheme jwt needs 'jwt'")
        signatureKey = { type: 'jwt', jwt: req.jwt }
    } else if (scheme === 'jwks_uri') {
        const j = req.jwks_uri || {}
        if (![j.id, j.dwk, j.kid].every((s) => typeof s === 'string'))
            throw new Usage("scheme jwks_uri needs 'jwks_uri': {id, dwk, kid}")
        signatureKey = { type: 'jwks_uri', id: j.id, kid: j.kid, dwk: j.dwk }
    } else throw new Usage('scheme must be hwk, jwks_uri or jwt')

    const hasBody = body !== null && body !== undefined
    const opts = { method, headers, signingKey, signatureKey, dryRun: true }
    if (hasBody) opts.body = body
    if (components !== undefined && components !== null) {
        if (!Array.isArray(components)) throw new Usage("'components' must be a list")
        // "extra" components are appended to the library's own defaults
        const defaults = hasBody ? httpsig.DEFAULT_COMPONENTS_BODY : httpsig.DEFAULT_COMPONENTS_GET
        opts.components = [...defaults, ...components]
    }
    if (contentDigest !== undefined) opts.contentDigest = contentDigest

    const result = await withClock(created, () => httpsig.fetch(url, opts))
    const out = {}
    result.headers.forEach((v, k) => {
        out[k] = v
    })
    const inputNames = new Set(Object.keys(headers).map((k) => k.toLowerCase()))
    const si = out['signature-input'] || ''
    const m = /=\(([^)]*)\)/.exec(si)
    const covered = m ? [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]) : []
    const c = /;created=(-?\d+)/.exec(si)
    return {
        headers: out,
        library_added: Object.keys(out).filter((k) => !inputNames.has(k)).sort(),
        covered_components: covered,
        created: c ? Number(c[1]) : null,
        function: '@hellocoop/httpsig fetch(url, {dryRun: true, ...})',
        notes,
    }
}

function cmdParseChallenge(req) {
    const httpsig = load()
    const headers = lowerHeaders(req.headers)
    const out = {
        status: req.status ?? null,
        requirement: null,
        resource_token: null,
        header_used: null,
        parsed: null,
        error: null,
        functions: ['@hellocoop/httpsig parseDictionary (RFC 8941)'],
        notes: [
            '@hellocoop/httpsig has no AAuth-Requirement helper; it exports its RFC 8941 parser ' +
                'for that field. requirement = Token value of member "requirement", resource_token = ' +
                'its "resource-token" parameter. Only AAuth-Requirement is read (no legacy AAuth:).',
        ],
    }
    const v = headers['aauth-requirement']
    if (v) {
        out.header_used = 'aauth-requirement'
        try {
            const dict = httpsig.parseDictionary(v)
            const parsed = {}
            for (const [k, member] of dict) {
                if (httpsig.isInnerList(member)) {
                    parsed[k] = { inner_list: true }
                    continue
                }
                const [bare, params] = member
                const p = {}
                for (const [pk, pv] of params) p[pk] = jsonable(pv)
                parsed[k] = { value: jsonable(bare), token: bare instanceof httpsig.Token, params: p }
            }
            out.parsed = parsed
            const m = dict.get('requirement')
            if (m && !httpsig.isInnerList(m) && m[0] instanceof httpsig.Token) {
                out.requirement = m[0].toString()
                const rt = m[1].get('resource-token')
                out.resource_token = typeof rt === 'string' ? rt : null
            } else if (m) {
                out.error = 'requirement member is not a Token'
            }
        } catch (e) {
            out.error = `${e.name}: ${e.message}`
        }
    }
    if (headers['signature-error']) {
        try {
            out.signature_error = httpsig.parseSignatureError(headers['signature-error'])
            out.functions.push('@hellocoop/httpsig parseSignatureError')
        } catch (e) {
            out.signature_error = { parse_error: e.message }
        }
    }
    if (headers['accept-signature-scheme']) {
        try {
            out.accept_signature_scheme = httpsig.parseAcceptSignatureScheme(
                headers['accept-signature-scheme'],
            )
        } catch (e) {
            out.accept_signature_scheme = { parse_error: e.message }
        }
    }
    return out
}

function jsonable(v) {
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) return v
    if (lib && v instanceof lib.Token) return v.toString()
    if (lib && lib.isByteSequence && lib.isByteSequence(v)) return { byte_sequence: v.toBase64?.() ?? String(v) }
    return String(v)
}

function cmdVerifyResourceToken() {
    load()
    throw new Unsupported(
        '@hellocoop/httpsig has no JWT/resource-token verifier: verify() only decodes a jwt-scheme ' +
            'assertion to take cnf.jwk and check exp/iat; issuer signature, typ, iss and aud are left to the caller',
    )
}

async function cmdVerify(req) {
    const httpsig = load()
    const { method = 'GET', url, headers = {}, body = null, jwks = null, now, window } = req
    if (typeof url !== 'string') throw new Usage("verify needs 'url'")
    const u = new URL(url)
    const calls = []
    const realFetch = globalThis.fetch
    // jwks_uri discovery is served from the request's 'jwks' (no network):
    // {id}/.well-known/{dwk} -> {issuer: id, jwks_uri: id + "/.interop-jwks"}
    globalThis.fetch = async (input) => {
        const s = String(input)
        calls.push(s)
        const json = (o) => new Response(JSON.stringify(o), { status: 200, headers: { 'content-type': 'application/json' } })
        if (s.endsWith('/.interop-jwks')) return json(jwks ?? { keys: [] })
        const i = s.indexOf('/.well-known/')
        if (i >= 0) return json({ issuer: s.slice(0, i), jwks_uri: s.slice(0, i) + '/.interop-jwks' })
        return new Response('not found', { status: 404, statusText: 'Not Found' })
    }
    try {
        const request = {
            method,
            authority: u.host,
            path: u.pathname,
            query: u.search ? u.search.substring(1) : undefined,
            headers: lowerHeaders(headers),
        }
        if (body !== null && body !== undefined) request.body = body
        const opts = {}
        if (window !== undefined) opts.maxClockSkew = window
        const r = await withClock(now, () => httpsig.verify(request, opts))
        return {
            verified: r.verified === true,
            error: r.error ?? (r.verified ? null : 'verify() returned verified=false'),
            error_code: r.signatureError?.error ?? null,
            key_type: r.keyType,
            thumbprint: r.thumbprint || null,
            created: r.created || null,
            function: '@hellocoop/httpsig verify()',
            fetch_calls: calls,
        }
    } finally {
        globalThis.fetch = realFetch
    }
}

const HANDLERS = {
    version: cmdVersion,
    sign: cmdSign,
    'parse-challenge': cmdParseChallenge,
    'verify-resource-token': cmdVerifyResourceToken,
    verify: cmdVerify,
}

async function readStdin() {
    if (process.stdin.isTTY) return ''
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
            load()
            if (libVersion !== EXPECTED_VERSION)
                throw new Usage(`installed @hellocoop/httpsig ${libVersion}, this peer needs ${EXPECTED_VERSION}`)
        }
        out = await HANDLERS[sub](req)
    } catch (e) {
        if (e instanceof Usage) {
            out = { error: e.message, error_type: 'usage' }
            code = 2
        } else if (e instanceof Unsupported) {
            out = { unsupported: e.message }
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
