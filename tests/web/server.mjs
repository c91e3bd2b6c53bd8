// Starts `lmhost serve` on a free loopback port for a test and stops it after.
import { spawn } from "node:child_process";
import net from "node:net";

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function startServer(args = [], env = {}) {
  const bin = process.env.LMHOST_BINARY;
  if (!bin) throw new Error("LMHOST_BINARY is not set (run through ctest or tests/web/run.sh)");
  const port = await freePort();
  const child = spawn(bin, ["serve", "--host", "127.0.0.1", "--port", String(port), "-q", ...args], {
    env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "", exited = null;
  child.stderr.on("data", (d) => { log += d; });
  child.on("exit", (code, sig) => { exited = code ?? sig; });
  child.on("error", (e) => { exited = String(e); });
  const base = `http://127.0.0.1:${port}`;
  // Wait until the models are ready (the demo models are synthesized on first use).
  const t0 = Date.now();
  for (;;) {
    if (exited !== null) throw new Error(`lmhost exited (${exited}):\n${log}`);
    try { const r = await fetch(base + "/health"); if (r.status === 200) break; } catch (e) {}
    if (Date.now() - t0 > 120000) { child.kill("SIGKILL"); throw new Error("lmhost not healthy in 120 s:\n" + log); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base, port, child, log: () => log,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const t = setTimeout(() => child.kill("SIGKILL"), 15000);
      child.on("exit", () => { clearTimeout(t); resolve(); });
      child.kill("SIGTERM");
    }),
  };
}
