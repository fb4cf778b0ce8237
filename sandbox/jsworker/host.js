// The JavaScript callback worker. deno runs it with no --allow-* flag, so
// the callback has no files, network, environment, subprocesses or FFI.
//
// Protocol: the host writes one JSON object a line on stdin (config, load,
// then calls, or batches {"common", "items": [[node row, result], ...], "group_s"}
// where a node row is [path, mode, uid, gid, size, atime s, ns, mtime s, ns,
// ctime s, ns, metadata] and a result is an object, null, or a delivered
// file's [source, destination, ...] (expanded when the callback first asks
// for it)
// answered in groups: one frame per group, nonce "NONCE.FIRST" with
// {"answers": [...]} (a success as [result, truthy, metadata or null when
// unchanged], a failure as its object, a bare integer N for "the answer before, N
// more times"), written when the batch ends, before a call once the
// oldest unsent answer is group_s old, or before the frame cap); answers go
// to stdout as
//     "\x1e" + token + " " + nonce + " " + json + "\n"
// The callback shares stdout (console.log), so the host treats any other
// bytes as captured output. The token is a per-worker secret read before
// the callback is compiled and kept only in this module's closure; every
// function that touches it was captured before the callback could patch
// a global or a prototype.
import { metadataOf, publicApi, Request, Task } from "./utils.js";

const uncurry = (fn) => Function.prototype.call.bind(fn);
const U8 = Uint8Array;
const subarray = uncurry(U8.prototype.subarray);
const indexOf = uncurry(U8.prototype.indexOf);
const setBytes = uncurry(U8.prototype.set);
const byteLength = uncurry(
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(U8.prototype), "byteLength").get,
);
const encoder = new TextEncoder();
const encode = encoder.encode.bind(encoder);
const decoder = new TextDecoder();
const decode = decoder.decode.bind(decoder);
const writeSync = Deno.stdout.writeSync.bind(Deno.stdout);
const readSync = Deno.stdin.readSync.bind(Deno.stdin);
const stringify = JSON.stringify;
const parse = JSON.parse;
const toString = String;
const FunctionCtor = Function;
const startInterval = setInterval;
const stopInterval = clearInterval;
const MARK = "\x1e";
const clock = performance.now.bind(performance);
const arrayPush = uncurry(Array.prototype.push);
const arrayJoin = uncurry(Array.prototype.join);

let pending = new U8(0);

const chunk = new U8(65536);

function readLine() {
  for (;;) {
    const newline = indexOf(pending, 10);
    if (newline >= 0) {
      const line = decode(subarray(pending, 0, newline));
      pending = subarray(pending, newline + 1);
      return line;
    }
    const count = readSync(chunk);
    if (count === null) return null;
    if (byteLength(pending) === 0) {
      // The usual case: a whole request in one read; copy it out of `chunk`.
      pending = new U8(subarray(chunk, 0, count));
      continue;
    }
    const merged = new U8(byteLength(pending) + count);
    setBytes(merged, pending, 0);
    setBytes(merged, subarray(chunk, 0, count), byteLength(pending));
    pending = merged;
  }
}

let token = "";
let frameLimit = 1 << 20;

function serialise(message) {
  try {
    const body = stringify(message);
    if (typeof body === "string" && body.length <= frameLimit) return body;
    return stringify({ ok: false, kind: "output_limit", error: "result larger than the output cap" });
  } catch (error) {
    return stringify({ ok: false, kind: "exception", error: "result is not JSON: " + describe(error) });
  }
}

function send(nonce, message) {
  sendBody(nonce, serialise(message));
}

function sendBody(nonce, body) {
  const bytes = encode(MARK + token + " " + nonce + " " + body + "\n");
  const total = byteLength(bytes);
  let written = 0;
  while (written < total) written += writeSync(written === 0 ? bytes : subarray(bytes, written));
}

function describe(error) {
  try {
    if (error !== null && typeof error === "object" && typeof error.stack === "string") {
      return error.stack;
    }
    return toString(error);
  } catch {
    return "unprintable error";
  }
}

function requireForCallback(name) {
  if (name === "./utils" || name === "./utils.js" || name === "utils") return publicApi;
  throw new Error(`require('${name}') is not available in the callback sandbox; only './utils' is`);
}

function load(source, filename) {
  let factory;
  try {
    factory = new FunctionCtor("module", "exports", "require", source + "\n//# sourceURL=" + filename);
  } catch (error) {
    return { error: { ok: false, kind: "syntax", error: describe(error) } };
  }
  const module = { exports: {} };
  try {
    factory(module, module.exports, requireForCallback);
  } catch (error) {
    return { error: { ok: false, kind: "exception", error: describe(error) } };
  }
  let entry = module.exports;
  if (typeof entry !== "function" && entry !== null && typeof entry === "object") {
    entry = entry.default;
  }
  if (typeof entry !== "function") {
    return { error: { ok: false, kind: "no_entrypoint", error: "callback sets no module.exports function" } };
  }
  return { entry };
}

function succeeded(req, value) {
  return { ok: true, result: value === undefined ? null : value, truthy: !!value, metadata: metadataOf(req) };
}

function failed(error) {
  return { ok: false, kind: "exception", error: describe(error) };
}

async function settle(req, promise) {
  // Keep the event loop alive so a promise that never settles is a hang the
  // host times out, not a "top-level await never resolved" exit.
  const keepAlive = startInterval(() => {}, 1 << 30);
  try {
    return succeeded(req, await promise);
  } catch (error) {
    return failed(error);
  } finally {
    stopInterval(keepAlive);
  }
}

// Returns the outcome, or a promise of it when the callback is async; plain
// functions never touch the event loop, which keeps warm calls cheap.
function call(entry, wire, task) {
  const req = new Request(wire, task);
  // The seed reads `task` as a free name in BEFORE_TASK_EXECUTED callbacks.
  globalThis.task = req.getTask();
  try {
    const value = entry(req);
    if (value !== null && (typeof value === "object" || typeof value === "function") &&
        typeof value.then === "function") {
      return { pending: settle(req, value) };
    }
    return succeeded(req, value);
  } catch (error) {
    return failed(error);
  }
}

const keysOf = Object.keys;

function sameMetadata(now, sent) {
  if (now === sent) return true;
  if (now === null || sent === null || typeof sent !== "object") return now === sent;
  const before = keysOf(sent);
  if (keysOf(now).length !== before.length) return false;
  for (let i = 0; i < before.length; i++) if (now[before[i]] !== sent[before[i]]) return false;
  return true;
}

// A batch's answers, a group per frame (see the protocol above): one write per group
// instead of per file; a call that hangs leaves at most group_s of answers unsent.
async function batch(entry, message) {
  const common = message.common;
  const items = message.items;
  // Every request of a batch has the same task: one Task for all of them.
  const task = new Task(common.task);
  const groupMs = (message.group_s || 0) * 1000;
  let bodies = [];
  let size = 0;
  let first = 0;
  let since = 0;
  // Repeats of the last body, sent as one integer.
  let repeats = 0;
  const endRepeats = () => {
    if (repeats) {
      arrayPush(bodies, toString(repeats));
      size += 21;
      repeats = 0;
    }
  };
  const flush = () => {
    endRepeats();
    if (bodies.length) sendBody(message.nonce + "." + first, '{"answers":[' + arrayJoin(bodies, ",") + "]}");
    bodies = [];
    size = 0;
  };
  for (let index = 0; index < items.length; index++) {
    if (bodies.length && clock() - since >= groupMs) flush();
    if (!bodies.length) {
      first = index;
      since = clock();
    }
    const item = items[index];
    const row = item[0];
    const node = row === null ? null : {
      path: row[0], mode: row[1], uid: row[2], gid: row[3], size: row[4],
      atime: [row[5], row[6]], mtime: [row[7], row[8]], ctime: [row[9], row[10]], metadata: row[11],
    };
    const wire = { id: common.id, stage: common.stage, task: common.task, node, result: item[1] };
    const pending = call(entry, wire, task);
    const outcome = pending.pending ? await pending.pending : pending;
    // A success as [result, truthy, metadata], metadata null when unchanged.
    const body = outcome.ok
      ? serialise([outcome.result, outcome.truthy, row !== null && sameMetadata(outcome.metadata, row[11]) ? null : outcome.metadata])
      : serialise(outcome);
    if (bodies.length && body === bodies[bodies.length - 1]) {
      repeats++;
    } else {
      endRepeats();
      // Up to 3 bytes a UTF-16 unit once encoded: stay under the frame cap in bytes.
      const cost = body.length * 3 + 1;
      if (bodies.length && size + cost + 64 > frameLimit) {
        flush();
        first = index;
        since = clock();
      }
      arrayPush(bodies, body);
      size += cost;
    }
    // The host replaces the worker after these: the rest goes to a fresh one.
    if (!outcome.ok && (outcome.kind === "memory" || outcome.kind === "output_limit")) break;
  }
  flush();
}

const config = parse(readLine());
token = config.token;
frameLimit = config.frame_limit;
send("ready", { ok: true, layers: { deno: true } });
const loadMessage = parse(readLine());
const loaded = load(loadMessage.source, loadMessage.filename);
if (loaded.error) {
  send("load", loaded.error);
} else {
  send("load", { ok: true });
  for (let line = readLine(); line !== null; line = readLine()) {
    const message = parse(line);
    if (message.op === "batch") {
      await batch(loaded.entry, message);
    } else {
      const outcome = call(loaded.entry, message.request);
      send(message.nonce, outcome.pending ? await outcome.pending : outcome);
    }
  }
}
