// Connection churn against a running gateway: rounds of N WebSocket connections (Node's built-in
// client, which offers permessage-deflate like a browser) opened, held a moment, and closed; after
// each round the gateway's RSS is read from /proc. Memory that does not come back is a leak.
// usage: node --experimental-websocket churn.mjs GATEWAY_PID [rounds=10] [connections=5000] [base=127.0.0.1:8080]
// SB_SECRET: the stack's JWT secret (.state/stack/jwt-secret).
import crypto from "node:crypto";
import fs from "node:fs";

const [pid, roundsS = "10", nS = "5000", base = "127.0.0.1:8080"] = process.argv.slice(2);
const rounds = +roundsS, n = +nS, secret = process.env.SB_SECRET || "";
const b64u = (b) => Buffer.from(b).toString("base64url");
function jwt(sub) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64u(JSON.stringify({ alg: "HS256", typ: "JWT" })), p = b64u(JSON.stringify({ sub, iat: now, exp: now + 3600 }));
  return `${h}.${p}.${crypto.createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url")}`;
}
const rssMiB = () => +(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tokens = Array.from({ length: 100 }, (_, i) => jwt(`churn-${i}`));
const results = [];
for (let round = 1; round <= rounds; round++) {
  let open = 0, failed = 0, closed = 0;
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(`ws://${base}/ws?token=${tokens[i % tokens.length]}`);
    ws.onopen = () => open++;
    ws.onerror = () => failed++;
    ws.onclose = () => closed++;
    sockets.push(ws);
    if (i % 500 === 499) await sleep(100);
  }
  const t0 = Date.now();
  while (open + failed < n && Date.now() - t0 < 60000) await sleep(50);
  await sleep(1000);
  for (const ws of sockets) try { ws.close(); } catch {}
  const t1 = Date.now();
  while (closed < n && Date.now() - t1 < 30000) await sleep(50);
  await sleep(3000);
  const rss = rssMiB();
  results.push({ round, open, failed, rss_mib: +rss.toFixed(1) });
  console.log(JSON.stringify(results[results.length - 1]));
}
const first = results[0].rss_mib, last = results[results.length - 1].rss_mib;
console.log(JSON.stringify({ rounds, connections: n, first_round_mib: first, last_round_mib: last, growth_mib: +(last - first).toFixed(1) }));
process.exit(0);
