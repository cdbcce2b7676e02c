// cunet ui: upload songs, hear their stems while they are separated (Web Audio), download them.
// Plain JavaScript, no build step, nothing from the internet. Every request carries the access token.
"use strict";

const TOKEN = document.querySelector('meta[name="cunet-token"]').content;
const COLORS = {vocals: "#ef6f4f", drums: "#f2b134", bass: "#33b5a6", other: "#8d7cf6"};
const LOOKAHEAD = 3.0;   // seconds of audio scheduled ahead of the play head (mute and solo act at once: gains)
const RESUME = 1.0;      // seconds that must be separated past the play head before a wait ends
const LEAD = 30;         // seconds of stems taken ahead of the play head while the song is still separating
// Frames as 16-bit integers: half the bytes of floats, and cheaper for browser and server alike, even with the
// conversion loop here (measured: docs/ui.md).
const FORMAT = "s16";
const $ = (id) => document.getElementById(id);

// State the tests and the benchmark read: window.cunet.state(), window.cunet.timings.
const timings = {};          // song id -> {dropped, uploaded, firstSound, streamed, separated} (ms, performance.now())
const songs = new Map();     // id -> last JSON from the server
const rows = new Map();      // id -> <li>
const uploadsInFlight = new Map();  // id -> XMLHttpRequest
let config = null;

async function api(path, options = {}) {
  const headers = Object.assign({"X-Cunet-Token": TOKEN}, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, {headers}));
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function withToken(url) {
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

function stemUrl(id, key, format, download) {
  return withToken(`/api/songs/${id}/stems/${encodeURIComponent(key)}.${format}` + (download ? "?download=1" : ""));
}

function newId() {  // the song's id, chosen here so its stream can be opened while it uploads
  return [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function message(text, kind = "error") {
  const div = document.createElement("div");
  div.className = "message " + kind;
  div.textContent = text;
  const close = document.createElement("button");
  close.className = "close";
  close.title = "Dismiss";
  close.textContent = "\u00d7";
  close.onclick = () => div.remove();
  div.appendChild(close);
  $("messages").appendChild(div);
}

function clock(seconds) {
  seconds = Math.max(0, seconds || 0);
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

// ---------------------------------------------------------------- options and uploads
async function loadConfig() {
  config = await api("/api/config");
  $("model").textContent = config.model ? `model: ${config.model}` : "";
  const box = $("instruments");
  for (const name of config.instruments) {
    const label = document.createElement("label");
    label.className = "chip";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = true;
    input.value = name;
    input.name = "instrument";
    label.append(input, " " + name);
    box.appendChild(label);
  }
}

const uploads = [];      // files waiting to be sent, one at a time
let uploading = false;

function addFiles(files) {
  const instruments = [...document.querySelectorAll('input[name="instrument"]:checked')].map((i) => i.value);
  if (!instruments.length) { message("Choose at least one instrument."); return; }
  const residual = $("residual").checked;
  for (const file of files) uploads.push({file, instruments, residual, dropped: performance.now()});
  pump();
}

async function pump() {
  if (uploading) return;
  uploading = true;
  while (uploads.length) await send(uploads.shift());
  uploading = false;
}

function send(job) {
  const {file} = job;
  if (config && file.size > config.max_upload_bytes) {
    message(`${file.name}: the file is ${(file.size / 1e6).toFixed(1)} MB, more than the limit of ` +
            `${(config.max_upload_bytes / 1e6).toFixed(1)} MB (cunet ui --max-upload-mb)`);
    return Promise.resolve();
  }
  const id = newId();
  const row = songRow(id, file.name);
  row.dataset.uploading = "1";
  timings[id] = {dropped: job.dropped};
  const query = new URLSearchParams({name: file.name, instruments: job.instruments.join(","),
                                     residual: job.residual ? "1" : "0", id});
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    uploadsInFlight.set(id, xhr);
    const done = () => { uploadsInFlight.delete(id); delete row.dataset.uploading; resolve(); };
    xhr.open("POST", "/api/songs?" + query);
    xhr.setRequestHeader("X-Cunet-Token", TOKEN);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && !songs.has(id)) setBar(row, e.loaded / e.total, `uploading ${Math.round(100 * e.loaded / e.total)}%`);
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      done();
      if (xhr.status === 201 && body) {
        timings[id].uploaded = performance.now();
        row.dataset.known = String(timings[id].uploaded);
        update(body);
      } else {
        forget(id);
        message(`${file.name}: ` + ((body && body.error) || `upload failed (${xhr.status})`).replace(`${file.name}: `, ""));
      }
    };
    xhr.onerror = () => { done(); forget(id); message(`${file.name}: upload failed (is cunet ui still running?)`); };
    xhr.onabort = () => { done(); forget(id); };
    xhr.send(file);
    // Listen while it uploads: the stream waits for the song, and plays it as soon as its first chunk is separated.
    if (!player.song || (!player.wanted && !player.playing && !player.autoplay)) openSong({id, name: file.name}, true);
  });
}

function setBar(li, fraction, text) {
  li.querySelector(".bar > div").style.width = `${(100 * fraction).toFixed(1)}%`;
  li.querySelector(".state").textContent = text;
}

// ---------------------------------------------------------------- the song list
function songRow(id, name) {
  let li = rows.get(id);
  if (li) return li;
  li = document.createElement("li");
  li.className = "song";
  li.dataset.id = id;
  li.innerHTML = '<div class="song-head"><span class="name"></span><span class="state"></span>' +
    '<span class="actions"><button class="button open">Open</button>' +
    '<button class="button remove" title="Remove the song and delete its files">Remove</button></span></div>' +
    '<div class="bar"><div></div></div><div class="error"></div>';
  li.querySelector(".name").textContent = name;
  li.querySelector(".open").onclick = () => openSong(songs.get(id) || {id, name}, false);
  li.querySelector(".remove").onclick = () => removeSong(id);
  rows.set(id, li);
  $("song-list").appendChild(li);
  $("empty").hidden = true;
  setBar(li, 0, "uploading");
  return li;
}

function update(song) {
  songs.set(song.id, song);
  const li = songRow(song.id, song.name);
  li.dataset.state = song.state;
  const what = song.stems.length ? `${song.stems.length} stems` : song.instruments.join(", ");
  const upload = song.uploaded < 1 ? ` \u00b7 uploading ${Math.round(100 * song.uploaded)}%` : "";
  const text = {queued: `queued (#${song.queue_position})` + upload,
                separating: `separating ${Math.round(100 * song.progress)}%` + upload,
                done: `${what} \u00b7 ${clock(song.duration)}` +
                      (song.separation_seconds != null ? ` \u00b7 separated in ${song.separation_seconds.toFixed(1)} s` : ""),
                failed: "failed"}[song.state];
  setBar(li, song.progress, text);
  li.querySelector(".open").hidden = song.state === "failed" || (player.song && player.song.id === song.id);
  li.querySelector(".error").textContent = song.error || "";
  li.classList.toggle("current", !!(player.song && player.song.id === song.id));
  const t = timings[song.id];
  if (song.state === "done" && t && !t.separated) t.separated = performance.now();
  if (player.song && player.song.id === song.id) playerSongChanged(song);
}

function forget(id) {
  const li = rows.get(id);
  if (li) li.remove();
  rows.delete(id);
  songs.delete(id);
  if (player.song && player.song.id === id) closePlayer();
  $("empty").hidden = rows.size > 0;
}

async function removeSong(id) {
  const li = rows.get(id);
  if (li) li.classList.add("removing");
  if (player.song && player.song.id === id) closePlayer();
  const xhr = uploadsInFlight.get(id);
  if (xhr) xhr.abort();
  try {
    await api(`/api/songs/${id}`, {method: "DELETE"});
  } catch (e) {
    if (!/no such song/.test(e.message)) { message(e.message); if (li) li.classList.remove("removing"); return; }
  }
  forget(id);
}

let failures = 0;

async function poll() {
  try {
    const asked = performance.now();
    const list = await api("/api/songs");
    const seen = new Set();
    for (const song of list) { seen.add(song.id); update(song); }
    for (const [id, li] of [...rows]) {   // gone from the server (not an upload it has not listed yet)
      if (!seen.has(id) && !li.dataset.uploading && !(Number(li.dataset.known || 0) > asked)) forget(id);
    }
    failures = 0;
  } catch (e) {  // the server may be busy (try again) or stopped (say so, once)
    if (++failures === 5) message("cunet ui does not answer: was it stopped? Start it again and open the new address.");
  }
  const busy = [...songs.values()].some((s) => s.state === "queued" || s.state === "separating");
  setTimeout(poll, busy || uploading ? 250 : 1000);
}

// ---------------------------------------------------------------- the live stream of a song's stems
// GET /api/songs/{id}/live: uint32 n and n bytes of JSON (rate, channels, length, stems, format), then frames as
// they are separated: uint32 start, uint32 count, samples [stems][channels][count] (float32 or int16).
function byteQueue() {
  const chunks = [];
  let size = 0;
  return {
    get size() { return size; },
    push(chunk) { chunks.push(chunk); size += chunk.length; },
    take(n) {  // the next n bytes, copied into a buffer of their own (aligned for typed arrays)
      const out = new Uint8Array(n);
      let filled = 0;
      while (filled < n) {
        const c = chunks[0], k = Math.min(c.length, n - filled);
        out.set(c.subarray(0, k), filled);
        filled += k;
        if (k === c.length) chunks.shift(); else chunks[0] = c.subarray(k);
      }
      size -= n;
      return out;
    },
  };
}

async function readLive(id, from, signal, onHeader, onFrame, pace, format = FORMAT) {
  const response = await fetch(`/api/songs/${id}/live?from=${from}&format=${format}`,
                               {signal, headers: {"X-Cunet-Token": TOKEN}});
  if (!response.ok) {
    let text = `${response.status}`;
    try { text = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(text);
  }
  const reader = response.body.getReader();
  const queue = byteQueue();
  let phase = "length", need = 4, header = null, start = 0, count = 0;
  for (;;) {
    if (header) await pace();
    const {done, value} = await reader.read();
    if (done) return;
    queue.push(value);
    while (queue.size >= need) {
      const bytes = queue.take(need), view = new DataView(bytes.buffer);
      if (phase === "length") {
        phase = "header";
        need = view.getUint32(0, true);
      } else if (phase === "header") {
        header = JSON.parse(new TextDecoder().decode(bytes));
        onHeader(header);
        phase = "head";
        need = 8;
      } else if (phase === "head") {
        start = view.getUint32(0, true);
        count = view.getUint32(4, true);
        phase = "samples";
        need = count * header.keys.length * header.channels * (header.format === "f32" ? 4 : 2);
      } else {
        onFrame(start, count, header.format === "f32" ? new Float32Array(bytes.buffer) : new Int16Array(bytes.buffer));
        phase = "head";
        need = 8;
      }
    }
  }
}

// ---------------------------------------------------------------- the player
const player = {ctx: null, song: null, header: null, tracks: [], frames: [], available: 0, total: 0, rate: 44100,
                sources: [], playing: false, wanted: false, waiting: false, autoplay: false, offset: 0,
                origin: 0, next: 0, playFrom: 0, until: 0, generation: 0, abort: null, frame: 0, timer: 0,
                drawn: {}, dirty: false, stats: {late: 0, stalls: 0}};

function position() {
  if (!player.playing) return player.offset;
  const p = (player.ctx.currentTime * player.rate - player.origin) / player.rate;
  return Math.min(player.until * 1 / player.rate, Math.max(player.offset, p));
}

function openSong(song, autoplay) {
  if (!song || song.state === "failed") return;
  if (player.song && player.song.id === song.id) return;
  closePlayer();
  const generation = ++player.generation;
  player.song = song;
  player.autoplay = autoplay;
  player.abort = new AbortController();
  if (!player.ctx) audioContext(44100);
  $("player").hidden = false;
  $("player-title").textContent = song.name;
  $("player-status").textContent = "waiting for the song\u2026";
  $("play").disabled = true;
  for (const li of rows.values()) li.classList.toggle("current", li.dataset.id === song.id);
  for (const [id, li] of rows) li.querySelector(".open").hidden = id === song.id || (songs.get(id) || {}).state === "failed";
  renderDownloads();
  const mine = () => generation === player.generation;
  readLive(song.id, 0, player.abort.signal,
           (header) => { if (mine()) started(header); },
           (start, count, pcm) => { if (mine()) received(start, count, pcm); },
           () => (mine() ? pace() : null))
    .then(() => { if (mine()) streamEnded(); })
    .catch((e) => {
      if (!mine() || e.name === "AbortError") return;
      $("player-status").textContent = `cannot play the song (${e.message})`;
      if (!player.header) { player.song = null; closePlayer(); }
    });
}

function audioContext(rate) {
  // At the song's own rate the browser plays the frames without resampling them (no seams between frames).
  // Made as the song is dropped (most songs are 44.1 kHz): it takes a while, and then it is allowed to play.
  if (player.ctx && player.ctx.sampleRate === rate) return;
  if (player.ctx) player.ctx.close();
  try { player.ctx = new AudioContext({sampleRate: rate}); } catch (e) { player.ctx = new AudioContext(); }
}

function started(header) {
  player.header = header;
  player.rate = header.sample_rate;
  player.total = header.n_samples;
  audioContext(header.sample_rate);
  player.tracks = header.keys.map((key) => {
    const gain = player.ctx.createGain();
    gain.connect(player.ctx.destination);
    return {key, gain, volume: 1, muted: key.startsWith("no_"), solo: false, row: null, lo: null, hi: null, peak: 0};
  });
  renderTracks();
  renderDownloads();
  applyGains();
  $("play").disabled = false;
  status();
  draw();
}

function received(start, count, pcm) {
  // One frame: an AudioBuffer per stem (the 16-bit samples of the stem files, as decoding them gives), the
  // waveform's columns under it, and more of the song to play.
  const channels = player.header.channels;
  const buffers = player.tracks.map((t, k) => {
    const buffer = new AudioBuffer({length: count, numberOfChannels: channels, sampleRate: player.rate});
    for (let c = 0; c < channels; c++) {
      const plane = pcm.subarray((k * channels + c) * count, (k * channels + c + 1) * count);
      if (pcm instanceof Float32Array) buffer.copyToChannel(plane, c);
      else { const out = buffer.getChannelData(c); for (let i = 0; i < count; i++) out[i] = plane[i] / 32768; }
    }
    waveColumns(t, buffer, start);
    return buffer;
  });
  player.frames.push({start, count, buffers});
  player.available = start + count;
  if (player.available >= player.total) {
    const t = timings[player.song.id];
    if (t && !t.streamed) t.streamed = performance.now();
  }
  if (player.autoplay && !player.wanted && !player.playing) { player.autoplay = false; play(); }
  else if (player.waiting && player.available >= Math.min(player.total, player.offset * player.rate + RESUME * player.rate)) resume();
  else schedule();
  player.dirty = true;
  requestDraw();
  status();
}

function wantFrames() {
  // While the song plays and is still being separated, its frames are taken only LEAD seconds ahead of the
  // play head: the server holds the rest, and the CPU the page would spend on them goes to the separation.
  if (!player.header || !player.playing || !player.song || ["done", "failed"].includes(player.song.state)) return true;
  return player.available / player.rate < position() + LEAD;
}

function pace() {
  if (wantFrames()) return null;
  return new Promise((resolve) => { player.pacing = resolve; });
}

function unpace() {
  if (player.pacing && (wantFrames() || !player.header)) { const go = player.pacing; player.pacing = null; go(); }
}

function streamEnded() {
  if (player.available < player.total) {  // cut short: the song failed or was removed (the list says why)
    $("player-status").textContent = "the separation stopped";
    return;
  }
  status();
}

function playerSongChanged(song) {
  const before = player.song.state;
  player.song = song;
  if (song.state !== before) renderDownloads();
  unpace();
  status();
  if (song.state === "failed" && before !== "failed") {  // what was separated has played; say why it stops
    pause();
    $("player-status").textContent = `the separation failed: ${song.error || "see the song's message"}`;
  }
}

function status() {
  if (!player.header) return;
  const song = player.song, text = [];
  if (player.waiting) text.push(`waiting for the separation to reach ${clock(player.offset)}\u2026`);
  if (song.state === "queued") text.push("queued");
  else if (song.state !== "done") text.push(`separating ${Math.round(100 * (song.progress || 0))}%`);
  else text.push(`${player.tracks.length} stems \u00b7 ${clock(player.total / player.rate)}`);
  if (player.tracks.some((t) => t.key.startsWith("no_"))) text.push("no_ stems are the mix minus each instrument");
  $("player-status").textContent = text.join(" \u00b7 ");
  $("player").classList.toggle("waiting", player.waiting);
}

function closePlayer() {
  stopSources();
  player.generation++;
  if (player.abort) player.abort.abort();
  if (player.pacing) { player.pacing(); player.pacing = null; }
  for (const t of player.tracks) t.gain.disconnect();
  clearInterval(player.timer);
  clearTimeout(player.frame);
  Object.assign(player, {song: null, header: null, tracks: [], frames: [], available: 0, total: 0, playing: false,
                         wanted: false, waiting: false, autoplay: false, offset: 0, abort: null, drawn: {},
                         stats: {late: 0, stalls: 0}});
  $("player").hidden = true;
  $("player").classList.remove("waiting");
  $("tracks").innerHTML = "";
  $("stem-links").innerHTML = "";
  for (const li of rows.values()) li.classList.remove("current");
  for (const [id, li] of rows) li.querySelector(".open").hidden = (songs.get(id) || {}).state === "failed";
  $("play").innerHTML = "&#9654; Play";
}

function stopSources() {
  for (const s of player.sources) { try { s.stop(); } catch (e) { /* not started */ } }
  player.sources = [];
}

async function play() {
  if (!player.header || player.playing) return;
  if (player.ctx.state === "suspended") await player.ctx.resume();
  if (player.offset >= player.total / player.rate - 0.01) player.offset = 0;
  player.wanted = true;
  $("play").innerHTML = "&#10074;&#10074; Pause";
  const need = Math.min(player.total, Math.round(player.offset * player.rate) + RESUME * player.rate);
  if (player.available < need) {
    player.waiting = true;   // seeking into what is not separated yet: wait for it, visibly
    status();
    return;
  }
  resume();
}

function resume() {
  // Start (again) at player.offset: every stem on one sample-exact clock, frames scheduled back to back.
  player.waiting = false;
  player.playFrom = Math.round(player.offset * player.rate);
  player.origin = Math.round((player.ctx.currentTime + 0.05) * player.rate) - player.playFrom;
  player.until = player.playFrom;
  player.next = player.frames.findIndex((f) => f.start + f.count > player.playFrom);
  if (player.next < 0) player.next = player.frames.length;
  player.playing = true;
  const t = timings[player.song.id];
  if (t && !t.firstSound) {
    t.firstSound = performance.now() + 50;
    t.firstSoundAvailable = player.available;
  }
  schedule();
  clearInterval(player.timer);
  player.timer = setInterval(schedule, 100);
  clearTimeout(player.frame);
  tick();
  status();
}

function schedule() {
  // Keep LOOKAHEAD seconds of every stem scheduled; when the separation falls behind the play head, wait for it.
  if (!player.playing) return;
  const ctx = player.ctx, now = ctx.currentTime, rate = player.rate;
  while (player.next < player.frames.length) {
    const f = player.frames[player.next];
    const skip = Math.max(0, player.playFrom - f.start);
    const at = (player.origin + f.start + skip) / rate;
    if (at > now + LOOKAHEAD) break;
    if (at < now) {   // an underrun: this frame would start after its time; start again from it, in sync
      player.stats.late++;
      player.offset = (f.start + skip) / rate;
      resume();
      return;
    }
    for (let k = 0; k < player.tracks.length; k++) {
      const source = ctx.createBufferSource();
      source.buffer = f.buffers[k];
      source.connect(player.tracks[k].gain);
      source.start(at, skip / rate);
      source.onended = () => { const i = player.sources.indexOf(source); if (i >= 0) player.sources.splice(i, 1); };
      player.sources.push(source);
    }
    player.until = f.start + f.count;
    player.next++;
  }
  unpace();
  const end = (player.origin + player.until) / rate;   // when the scheduled audio runs out
  if (now < end - 0.02) return;
  if (player.until >= player.total) {   // the end of the song
    pause();
    player.offset = 0;
    draw();
  } else {                              // the separation is behind the play head: wait for it
    player.stats.stalls++;
    pause();
    player.offset = player.until / rate;
    player.wanted = true;
    player.waiting = true;
    $("play").innerHTML = "&#10074;&#10074; Pause";
    status();
  }
}

function pause() {
  setTimeout(unpace);
  player.wanted = false;
  player.waiting = false;
  player.autoplay = false;
  $("play").innerHTML = "&#9654; Play";
  if (!player.playing) { status(); return; }
  player.offset = position();
  stopSources();
  player.playing = false;
  clearInterval(player.timer);
  status();
  draw();
}

function seek(seconds) {
  if (!player.header) return;
  const wanted = player.wanted || player.playing;
  if (player.playing) { player.offset = position(); stopSources(); player.playing = false; clearInterval(player.timer); }
  player.offset = Math.min(Math.max(0, seconds), player.total / player.rate);
  player.waiting = false;
  if (wanted) play(); else draw();
  unpace();
  status();
}

function applyGains() {
  const solo = player.tracks.some((t) => t.solo);
  for (const t of player.tracks) {
    const on = !t.muted && (!solo || t.solo);
    t.gain.gain.setTargetAtTime(on ? t.volume : 0, player.ctx.currentTime, 0.01);
    if (t.row) {
      t.row.classList.toggle("silent", !on);
      t.row.querySelector(".mute").classList.toggle("on", t.muted);
      t.row.querySelector(".solo").classList.toggle("on", t.solo);
    }
  }
}

function karaoke() {
  const rest = player.tracks.find((t) => t.key === "no_vocals");
  for (const t of player.tracks) {
    t.solo = false;
    t.muted = rest ? t !== rest : (t.key === "vocals" || t.key.startsWith("no_"));
  }
  applyGains();
}

function everything() {
  for (const t of player.tracks) { t.solo = false; t.muted = t.key.startsWith("no_"); }
  applyGains();
}

// ---------------------------------------------------------------- tracks and waveforms
function renderTracks() {
  const box = $("tracks");
  box.innerHTML = "";
  for (const t of player.tracks) {
    const row = document.createElement("div");
    row.className = "track";
    row.dataset.key = t.key;
    const base = t.key.replace(/^no_/, "");
    const color = t.key.startsWith("no_") ? "#9aa3b5" : (COLORS[base] || "#6fa8dc");
    row.style.setProperty("--color", color);
    t.color = color;
    row.innerHTML = '<div class="controls"><span class="key"></span>' +
      '<button class="mute" title="Mute">M</button><button class="solo" title="Solo">S</button>' +
      '<input class="volume" type="range" min="0" max="1.5" step="0.01" value="1" aria-label="Volume"></div>' +
      '<div class="wave"><canvas></canvas><div class="pending"></div><div class="played"></div><div class="cursor"></div></div>';
    row.querySelector(".key").textContent = t.key;
    row.querySelector(".volume").setAttribute("aria-label", `${t.key} volume`);
    row.querySelector(".mute").onclick = () => { t.muted = !t.muted; applyGains(); };
    row.querySelector(".solo").onclick = () => { t.solo = !t.solo; applyGains(); };
    row.querySelector(".volume").oninput = (e) => { t.volume = Number(e.target.value); applyGains(); };
    const wave = row.querySelector(".wave");
    wave.onclick = (e) => {
      const r = wave.getBoundingClientRect();
      seek(player.total / player.rate * (e.clientX - r.left) / r.width);
    };
    t.row = row;
    box.appendChild(row);
  }
  for (const t of player.tracks) {
    const canvas = t.row.querySelector("canvas"), ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    t.lo = new Float32Array(canvas.width);
    t.hi = new Float32Array(canvas.width);
  }
}

function waveColumns(t, buffer, start) {
  // Min/max of the samples under each pixel column, channels averaged: the waveform grows as frames arrive.
  const width = t.lo.length, per = player.total / width;
  const channels = [...Array(buffer.numberOfChannels).keys()].map((c) => buffer.getChannelData(c));
  const n = buffer.length, first = Math.floor(start / per), last = Math.min(width - 1, Math.floor((start + n - 1) / per));
  for (let x = first; x <= last; x++) {
    const from = Math.max(0, Math.floor(x * per) - start), to = Math.min(n, Math.floor((x + 1) * per) - start);
    const step = Math.max(1, Math.floor((to - from) / 256));   // enough samples per column for the envelope
    let lo = t.lo[x], hi = t.hi[x];
    for (let i = from; i < to; i += step) {
      let v = 0;
      for (const ch of channels) v += ch[i];
      v /= channels.length;
      if (v < lo) lo = v; else if (v > hi) hi = v;
    }
    t.lo[x] = lo;
    t.hi[x] = hi;
    t.peak = Math.max(t.peak, hi, -lo);
  }
}

function drawWaves() {
  // One scale for all the stems (their loudness compared honestly), the loudest filling 90% of the height;
  // only the new columns are drawn, unless the scale changed.
  if (!player.tracks.length) return;
  const scale = 0.9 / Math.max(1e-4, ...player.tracks.map((t) => t.peak));
  const columns = player.tracks.length ? player.tracks[0].lo.length : 0;
  const upto = Math.min(columns, Math.ceil(player.available / player.total * columns));
  const full = player.drawn.scale !== scale;
  const from = full ? 0 : (player.drawn.upto || 0);
  for (const t of player.tracks) {
    const canvas = t.row.querySelector("canvas"), g = canvas.getContext("2d"), mid = canvas.height / 2;
    if (full) g.clearRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = t.color;
    for (let x = from; x < upto; x++) {
      const top = mid - Math.min(1, t.hi[x] * scale) * mid, bottom = mid - Math.max(-1, t.lo[x] * scale) * mid;
      g.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
    t.row.querySelector(".pending").style.left = `${(100 * player.available / player.total).toFixed(2)}%`;
  }
  player.drawn.scale = scale;
  player.drawn.upto = upto;
}

function requestDraw() {
  if (player.drawQueued) return;
  player.drawQueued = true;
  requestAnimationFrame(() => { player.drawQueued = false; if (player.dirty) { player.dirty = false; drawWaves(); } draw(); });
}

function renderDownloads() {
  const song = player.song, format = $("format").value, box = $("stem-links");
  box.innerHTML = "";
  const ready = !!song && song.state === "done";
  const keys = ready ? song.stems : (song && song.keys) || (player.header ? player.header.keys : []);
  for (const key of keys) {
    const a = document.createElement("a");
    a.className = "button stem-link";
    a.textContent = key;
    if (ready) { a.href = stemUrl(song.id, key, format, true); a.setAttribute("download", ""); } else a.classList.add("disabled");
    box.appendChild(a);
  }
  $("zip").classList.toggle("disabled", !ready);
  if (ready) $("zip").href = withToken(`/api/songs/${song.id}/zip?format=${format}`); else $("zip").removeAttribute("href");
  $("downloads").title = ready ? "" : "The files can be downloaded once the separation is finished";
}

function draw() {
  // The position in the time label, the slider and on every waveform; the page is touched only when a pixel or
  // a second changes (no work for an idle page, little for a playing one).
  if (!player.tracks.length) return;
  const duration = player.total / player.rate, p = position(), fraction = duration ? p / duration : 0;
  const label = `${clock(p)} / ${clock(duration)}`;
  if (!player.drawn.width) player.drawn.width = player.tracks[0].row.querySelector(".wave").clientWidth;
  const at = Math.round(fraction * player.drawn.width);
  if (label !== player.drawn.label) { $("time").textContent = label; player.drawn.label = label; }
  const slider = Math.round(1000 * fraction);
  if (document.activeElement !== $("seek") && slider !== player.drawn.slider) { $("seek").value = slider; player.drawn.slider = slider; }
  if (at === player.drawn.at) return;
  player.drawn.at = at;
  for (const t of player.tracks) {
    t.row.querySelector(".cursor").style.transform = `translateX(${at}px)`;
    t.row.querySelector(".played").style.width = `${at}px`;
  }
}

function tick() {
  // While playing, redrawn once per pixel the cursor moves (at most 30 times a second): on a 2-core machine
  // every frame the browser draws is taken from the separation.
  draw();
  if (!player.playing) return;
  const step = 1000 * player.total / player.rate / Math.max(1, player.drawn.width || 1);
  player.frame = setTimeout(tick, Math.min(250, Math.max(33, step)));
}

// ---------------------------------------------------------------- wiring
function init() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles([...e.dataTransfer.files]);
  });
  $("files").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  $("play").onclick = () => (player.wanted || player.playing ? pause() : play());
  $("seek").oninput = (e) => seek(player.total / player.rate * Number(e.target.value) / 1000);
  $("karaoke").onclick = karaoke;
  $("everything").onclick = everything;
  $("format").onchange = () => { if (player.song) renderDownloads(); };
  window.addEventListener("resize", () => { player.drawn.width = 0; player.drawn.at = null; draw(); });
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && e.target === document.body && player.tracks.length) {
      e.preventDefault();
      player.wanted || player.playing ? pause() : play();
    }
  });
  loadConfig().catch((e) => message(`cannot reach cunet ui: ${e.message}`));
  poll();
}

window.cunet = {
  player, timings, play, pause, seek, karaoke, everything,
  open: (id) => openSong(songs.get(id), false), close: closePlayer,
  state: () => ({
    song: player.song && player.song.id, loading: !player.header, playing: player.playing, waiting: player.waiting,
    position: position(), duration: player.total / player.rate, available: player.available / player.rate,
    separated: player.header ? player.available >= player.total : false,
    contextTime: player.ctx ? player.ctx.currentTime : null,
    underruns: player.stats.late + player.stats.stalls, late: player.stats.late, stalls: player.stats.stalls,
    tracks: player.tracks.map((t) => ({key: t.key, muted: t.muted, solo: t.solo, volume: t.volume,
                                       gain: t.gain.gain.value})),
  }),
};

init();
