// BullMQ side of `cargo bench --bench peers`. One mode per process; results as one JSON line on stdout.
//
//   node bench.mjs fill N                 add N no-op jobs (addBulk, 1,000 a batch)
//   node bench.mjs work C N               a Worker at concurrency C until N jobs completed:
//                                         rate from the 1,000th handler entry to the Nth `completed`
//   node bench.mjs burst-worker C N T     an idle Worker; each job's handler-entry lateness against T (ms)
//   node bench.mjs burst-produce N T      add N jobs all due at T (epoch ms)
//   node bench.mjs idle C                 a Worker at concurrency C, doing nothing, forever
//   node bench.mjs victim                 a Worker whose handler prints "started" and sleeps 10 min
//   node bench.mjs rescuer                a Worker that prints "ran" at handler entry
//
// REDIS_PORT selects the Redis. Defaults otherwise (completed jobs are kept, BullMQ's default).
import { Queue, Worker } from "bullmq";

const connection = { host: "127.0.0.1", port: Number(process.env.REDIS_PORT) };
const name = "peers";
const [mode, a, b, c] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function fill(n, opts = () => ({})) {
  const q = new Queue(name, { connection });
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) batch.push({ name: "noop", data: { i: j }, opts: opts() });
    await q.addBulk(batch);
  }
  await q.close();
}

if (mode === "fill") {
  await fill(Number(a));
  out({ filled: Number(a) });
  process.exit(0);
} else if (mode === "work") {
  const conc = Number(a), n = Number(b);
  // The clock starts at the 1,000th handler entry and stops at the last `completed` (the job
  // acknowledged in Redis), the same window as our side's.
  let started = 0, done = 0, t1000 = 0;
  const w = new Worker(name, async () => {
    if (++started === 1000) t1000 = performance.now();
  }, { connection, concurrency: conc });
  w.on("completed", () => {
    done++;
    if (done === n) {
      const secs = (performance.now() - t1000) / 1000;
      out({ jobs: n - 1000, secs, rate: (n - 1000) / secs });
      process.exit(0);
    }
  });
} else if (mode === "burst-worker") {
  const conc = Number(a), n = Number(b), t = Number(c);
  const late = [];
  const w = new Worker(name, async () => { late.push(Date.now() - t); }, { connection, concurrency: conc });
  await w.waitUntilReady();
  out({ ready: true });
  w.on("completed", () => {
    if (late.length === n) {
      setTimeout(() => { out({ late }); process.exit(0); }, 50);
    }
  });
} else if (mode === "burst-produce") {
  const n = Number(a), t = Number(b);
  await fill(n, () => { const now = Date.now(); return { timestamp: now, delay: Math.max(0, t - now) }; });
  out({ produced: n });
  process.exit(0);
} else if (mode === "idle") {
  const w = new Worker(name, async () => {}, { connection, concurrency: Number(a) });
  await w.waitUntilReady();
  out({ ready: true });
} else if (mode === "victim") {
  new Worker(name, async () => { out({ started: Date.now() }); await new Promise((r) => setTimeout(r, 600000)); }, { connection, concurrency: 1 });
} else if (mode === "rescuer") {
  const w = new Worker(name, async () => { out({ ran: Date.now() }); }, { connection, concurrency: 1 });
  await w.waitUntilReady();
  out({ ready: true });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
