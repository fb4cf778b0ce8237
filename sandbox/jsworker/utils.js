// The objects a JavaScript callback is handed, shaped like the seed's
// protobuf-generated classes (jspb): getters, Timestamp.toDate() and a
// jspb.Map for metadata. `require('./utils')` returns `publicApi`.

export const Progress = Object.freeze({
  PROGRESS_UNSPECIFIED: 0,
  PROGRESS_INIT_STARTED: 1,
  PROGRESS_INIT_DONE: 2,
  PROGRESS_PROCESS_STARTED: 4,
  PROGRESS_PROCESS_DONE: 8,
  PROGRESS_FINAL_STARTED: 16,
  PROGRESS_FINAL_DONE: 32,
  PROGRESS_HAS_ERROR: 64,
  PROGRESS_STOPPED: 128,
  PROGRESS_STOPPED_BY_USER: 256,
  PROGRESS_PAUSED: 512,
});

export class Timestamp {
  #seconds;
  #nanos;
  constructor(seconds, nanos) {
    this.#seconds = seconds;
    this.#nanos = nanos;
  }
  getSeconds() { return this.#seconds; }
  getNanos() { return this.#nanos; }
  toDate() { return new Date(this.#seconds * 1000 + Math.floor(this.#nanos / 1e6)); }
  toObject() { return { seconds: this.#seconds, nanos: this.#nanos }; }
}

// jspb.Map<string, string>: get/set/has/del/clear/getLength/keys/values/
// entries/forEach/toArray/toObject (plus `delete` for Map-minded users).
export class MetadataMap {
  #map;
  constructor(object) { this.#map = new Map(Object.entries(object)); }
  get(key) { return this.#map.get(String(key)); }
  set(key, value) { this.#map.set(String(key), String(value)); return this; }
  has(key) { return this.#map.has(String(key)); }
  del(key) { return this.#map.delete(String(key)); }
  delete(key) { return this.#map.delete(String(key)); }
  clear() { this.#map.clear(); }
  getLength() { return this.#map.size; }
  get size() { return this.#map.size; }
  keys() { return this.#map.keys(); }
  values() { return this.#map.values(); }
  entries() { return this.#map.entries(); }
  forEach(callback, thisArg) {
    this.#map.forEach((value, key) => callback.call(thisArg, value, key, this));
  }
  toArray() { return Array.from(this.#map.entries()); }
  toObject() { return Object.fromEntries(this.#map); }
  [Symbol.iterator]() { return this.#map.entries(); }
}

const stamp = (pair) => new Timestamp(pair[0], pair[1]);

// Times and metadata become objects when first asked for: most callbacks read a path
// or a size only, and a node whose metadata was never asked for goes back as it came.
export class NodeInfo {
  #wire;
  #atime;
  #mtime;
  #ctime;
  #metadata;
  constructor(wire) {
    this.#wire = wire;
  }
  getPath() { return this.#wire.path; }
  getMode() { return this.#wire.mode; }
  getUid() { return this.#wire.uid; }
  getGid() { return this.#wire.gid; }
  getSize() { return this.#wire.size; }
  getAtime() { return this.#atime ??= stamp(this.#wire.atime); }
  getMtime() { return this.#mtime ??= stamp(this.#wire.mtime); }
  getCtime() { return this.#ctime ??= stamp(this.#wire.ctime); }
  getMetadataMap() { return this.#metadata ??= new MetadataMap(this.#wire.metadata); }
  // Host side: the metadata to send back (the very object sent when never asked for).
  static metadataOf(node) {
    return node.#metadata === undefined ? node.#wire.metadata : node.#metadata.toObject();
  }
}

export class TaskExecution {
  #progress;
  constructor(wire) { this.#progress = wire.progress ?? 0; }
  getProgress() { return this.#progress; }
}

export class Task {
  #id;
  #last;
  constructor(wire) {
    this.#id = wire.id;
    this.#last = wire.last_execution ? new TaskExecution(wire.last_execution) : undefined;
  }
  getId() { return this.#id; }
  getLastExecution() { return this.#last; }
  hasLastExecution() { return this.#last !== undefined; }
}

// A result sent as a delivered file's [source, destination, ...] (see the host's
// protocol) is expanded when the callback first asks for a field.
const isArray = Array.isArray;
const slice = Function.prototype.call.bind(Array.prototype.slice);

function expand(sent) {
  return {
    status: "SUCCESS",
    error: null,
    destination: sent[1],
    details: { destinations: slice(sent, 1), source: sent[0] },
  };
}

export class ExecutionResult {
  #wire;
  #sent;
  constructor(wire) {
    if (isArray(wire)) this.#sent = wire;
    else this.#wire = wire;
  }
  #read() { return this.#wire ??= expand(this.#sent); }
  getStatus() { return this.#read().status ?? ""; }
  getError() { return this.#read().error ?? undefined; }
  getDestination() { return this.#read().destination ?? undefined; }
  getDetails() { return { ...(this.#read().details ?? {}) }; }
}

let nodeOf;

export class Request {
  #wire;
  #task;
  #result;
  #node;
  static {
    nodeOf = (req) => (req !== null && typeof req === "object" && #node in req ? req.#node : undefined);
  }
  // `task`: the batch's Task, the same for every request of a batch.
  constructor(wire, task) {
    this.#wire = wire;
    this.#task = task ?? new Task(wire.task);
    this.#result = wire.result ? new ExecutionResult(wire.result) : undefined;
    if (wire.node) this.#node = new NodeInfo(wire.node);
  }
  getId() { return this.#wire.id; }
  getStage() { return this.#wire.stage; }
  getTask() { return this.#task; }
  getResult() { return this.#result; }
}

export function getNodeInfo(req) {
  return nodeOf(req);
}

// Host side only: the metadata to send back after the call.
export function metadataOf(req) {
  const node = nodeOf(req);
  return node ? NodeInfo.metadataOf(node) : null;
}

export const publicApi = Object.freeze({
  getNodeInfo,
  Progress,
  Timestamp,
  MetadataMap,
  NodeInfo,
  Request,
  Task,
  TaskExecution,
  ExecutionResult,
});
