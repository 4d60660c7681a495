// Starts a did:plc directory and Bluesky's reference PDS, with its built-in
// OAuth authorization server, on loopback from @atproto/dev-env; creates the
// test accounts; prints one JSON line describing the network; and runs until
// its stdin closes (its parent exited) or it gets SIGTERM or SIGINT.
//
// Environment:
//   ATAUTH_INTEROP_MODULES  the node_modules directory of an installed set
//   PLC_PORT, PDS_PORT      ports on localhost
//   ACCOUNTS                comma-separated names; each becomes <name>.test
//                           with email <name>@example.com
//   ACCOUNT_PASSWORD        every account's password
//   HOST_MAP                comma-separated host=http://localhost:PORT pairs:
//                           the PDS's outgoing fetches to host go to the
//                           target instead, so that an https client_id on a
//                           made-up name reaches a local app
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createRequire } = require('node:module')

const modules = process.env.ATAUTH_INTEROP_MODULES
if (!modules) {
  console.error('launch-network: ATAUTH_INTEROP_MODULES is not set')
  process.exit(2)
}
const requireSet = createRequire(path.join(modules, 'launcher.js'))

// TestPds creates random SQLite and blob directories under TMPDIR and never
// removes them: give it a private TMPDIR and remove that on exit.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atauth-interop-'))
process.env.TMPDIR = dataDir

installHostMap(process.env.HOST_MAP || '')

const { TestNetworkNoAppView } = requireSet('@atproto/dev-env')

const plcPort = Number(process.env.PLC_PORT)
const pdsPort = Number(process.env.PDS_PORT)
const names = (process.env.ACCOUNTS || 'alice').split(',').filter(Boolean)
const password = process.env.ACCOUNT_PASSWORD || 'hunter22'

// installHostMap points the PDS's outgoing fetches for mapped hosts at a
// local target. The PDS fetches client metadata and JWKS with the global
// fetch; the request keeps its path and query, only the origin changes.
function installHostMap(spec) {
  const map = new Map()
  for (const pair of spec.split(',').filter(Boolean)) {
    const i = pair.indexOf('=')
    map.set(pair.slice(0, i), new URL(pair.slice(i + 1)))
  }
  if (map.size === 0) return
  const realFetch = globalThis.fetch
  globalThis.fetch = function (input, init) {
    const req = input instanceof Request ? input : null
    const url = new URL(req ? req.url : String(input))
    const target = map.get(url.host)
    if (!target) return realFetch(input, init)
    url.protocol = target.protocol
    url.host = target.host
    return realFetch(req ? new Request(url, req) : url, init)
  }
}

function version(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(modules, pkg, 'package.json'), 'utf8')).version
  } catch {
    return ''
  }
}

let network
let closing = false
async function shutdown(code) {
  if (closing) return
  closing = true
  try {
    if (network) await network.close()
  } catch (err) {
    console.error('launch-network: close:', err)
  }
  fs.rmSync(dataDir, { recursive: true, force: true })
  process.exit(code)
}

async function createAccount(pdsUrl, name) {
  const handle = `${name}.test`
  const email = `${name}@example.com`
  const res = await fetch(`${pdsUrl}/xrpc/com.atproto.server.createAccount`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ handle, email, password }),
  })
  if (!res.ok) throw new Error(`createAccount ${handle}: ${res.status} ${await res.text()}`)
  const body = await res.json()
  return { did: body.did, handle: body.handle, email, password }
}

async function main() {
  const start = Date.now()
  network = await TestNetworkNoAppView.create({
    plc: { port: plcPort },
    pds: { port: pdsPort },
  })
  const pdsUrl = network.pds.url
  const accounts = []
  for (const name of names) accounts.push(await createAccount(pdsUrl, name))
  process.stdout.write(JSON.stringify({
    pdsUrl,
    plcUrl: network.plc.url,
    accounts,
    versions: {
      node: process.versions.node,
      devEnv: version('@atproto/dev-env'),
      pds: version('@atproto/pds'),
      oauthProvider: version('@atproto/oauth-provider'),
    },
    startMs: Date.now() - start,
  }) + '\n')
}

process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdin.on('end', () => shutdown(0))
process.stdin.on('close', () => shutdown(0))
process.stdin.resume()

main().catch((err) => {
  console.error('launch-network:', err)
  shutdown(1)
})
