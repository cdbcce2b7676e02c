// cunet ui: upload songs, follow their separation, play the stems together (Web Audio), download them.
// Plain JavaScript, no build step, nothing from the internet. Every request carries the access token.
"use strict";

const TOKEN = document.querySelector('meta[name="cunet-token"]').content;
const COLORS = {vocals: "#ef6f4f", drums: "#f2b134", bass: "#33b5a6", other: "#8d7cf6"};
const $ = (id) => document.getElementById(id);

// State the tests (and curious users) can read: window.cunet.state().
const timings = {};          // song id -> {dropped, uploaded, separated, playable} (ms, performance.now())
const songs = new Map();     // id -> last JSON from the server
const rows = new Map();      // id -> <li>
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

function stemUrl(song, key, format, download) {
  return withToken(`/api/songs/${song.id}/stems/${encodeURIComponent(key)}.${format}` + (download ? "?download=1" : ""));
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
  const row = pendingRow(file.name);
  if (config && file.size > config.max_upload_bytes) {
    row.remove();
    message(`${file.name}: the file is ${(file.size / 1e6).toFixed(1)} MB, more than the limit of ` +
            `${(config.max_upload_bytes / 1e6).toFixed(1)} MB (cunet ui --max-upload-mb)`);
    return Promise.resolve();
  }
  const query = new URLSearchParams({name: file.name, instruments: job.instruments.join(","),
                                     residual: job.residual ? "1" : "0"});
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/songs?" + query);
    xhr.setRequestHeader("X-Cunet-Token", TOKEN);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setBar(row, e.loaded / e.total, `uploading ${Math.round(100 * e.loaded / e.total)}%`);
    };
    xhr.onload = () => {
      row.remove();
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 201 && body) {
        timings[body.id] = {dropped: job.dropped, uploaded: performance.now()};
        update(body);
      } else {
        message(`${file.name}: ` + ((body && body.error) || `upload failed (${xhr.status})`).replace(`${file.name}: `, ""));
      }
      resolve();
    };
    xhr.onerror = () => { row.remove(); message(`${file.name}: upload failed (is cunet ui still running?)`); resolve(); };
    xhr.send(file);
  });
}

function pendingRow(name) {
  const li = document.createElement("li");
  li.className = "song uploading";
  li.innerHTML = '<div class="song-head"><span class="name"></span><span class="state"></span></div>' +
                 '<div class="bar"><div></div></div>';
  li.querySelector(".name").textContent = name;
  $("song-list").appendChild(li);
  $("empty").hidden = true;
  setBar(li, 0, "uploading");
  return li;
}

function setBar(li, fraction, text) {
  li.querySelector(".bar > div").style.width = `${(100 * fraction).toFixed(1)}%`;
  li.querySelector(".state").textContent = text;
}

// ---------------------------------------------------------------- the song list
function update(song) {
  songs.set(song.id, song);
  let li = rows.get(song.id);
  if (!li) {
    li = document.createElement("li");
    li.className = "song";
    li.dataset.id = song.id;
    li.innerHTML = '<div class="song-head"><span class="name"></span><span class="state"></span>' +
      '<span class="actions"><button class="button open">Open</button>' +
      '<button class="button remove" title="Remove the song and delete its files">Remove</button></span></div>' +
      '<div class="bar"><div></div></div><div class="error"></div>';
    li.querySelector(".name").textContent = song.name;
    li.querySelector(".open").onclick = () => openSong(songs.get(song.id));
    li.querySelector(".remove").onclick = () => removeSong(song.id);
    rows.set(song.id, li);
    $("song-list").appendChild(li);
    $("empty").hidden = true;
  }
  li.dataset.state = song.state;
  const what = song.stems.length ? `${song.stems.length} stems` : song.instruments.join(", ");
  let text = {queued: `queued (#${song.queue_position})`, separating: `separating ${Math.round(100 * song.progress)}%`,
              done: `${what} \u00b7 ${clock(song.duration)}` +
                    (song.separation_seconds != null ? ` \u00b7 separated in ${song.separation_seconds.toFixed(1)} s` : ""),
              failed: "failed"}[song.state];
  setBar(li, song.progress, text);
  li.querySelector(".open").hidden = song.state !== "done";
  li.querySelector(".error").textContent = song.error || "";
  li.classList.toggle("current", player.song && player.song.id === song.id);
  const t = timings[song.id];
  if (song.state === "done" && t && !t.separated) {
    t.separated = performance.now();
    if (!player.song || (!player.playing && !player.loading)) openSong(song);
  }
}

async function removeSong(id) {
  const li = rows.get(id);
  if (li) li.classList.add("removing");
  if (player.song && player.song.id === id) closePlayer();
  try {
    await api(`/api/songs/${id}`, {method: "DELETE"});
  } catch (e) {
    if (!/no such song/.test(e.message)) { message(e.message); if (li) li.classList.remove("removing"); return; }
  }
  if (li) li.remove();
  rows.delete(id);
  songs.delete(id);
  $("empty").hidden = rows.size > 0 || $("song-list").children.length > 0;
}

let failures = 0;

async function poll() {
  try {
    const list = await api("/api/songs");
    const seen = new Set();
    for (const song of list) { seen.add(song.id); update(song); }
    for (const id of [...rows.keys()]) if (!seen.has(id)) { rows.get(id).remove(); rows.delete(id); songs.delete(id); }
    failures = 0;
  } catch (e) {  // the server may be busy (try again) or stopped (say so, once)
    if (++failures === 5) message("cunet ui does not answer: was it stopped? Start it again and open the new address.");
  }
  const busy = [...songs.values()].some((s) => s.state === "queued" || s.state === "separating");
  setTimeout(poll, busy || uploading ? 250 : 1000);
}

// ---------------------------------------------------------------- the player
const player = {ctx: null, song: null, tracks: [], sources: [], playing: false, loading: false,
                offset: 0, startedAt: 0, duration: 0, generation: 0, frame: 0};

function position() {
  if (!player.playing) return player.offset;
  return Math.min(player.duration, Math.max(player.offset, player.ctx.currentTime - player.startedAt));
}

async function openSong(song) {
  if (!song || song.state !== "done") return;
  closePlayer();
  const generation = ++player.generation;
  player.song = song;
  player.loading = true;
  if (!player.ctx || player.ctx.sampleRate !== song.sample_rate) {
    // At the song's own rate the browser decodes the stems without resampling them.
    if (player.ctx) player.ctx.close();
    try { player.ctx = new AudioContext({sampleRate: song.sample_rate}); } catch (e) { player.ctx = new AudioContext(); }
  }
  $("player").hidden = false;
  $("player-title").textContent = song.name;
  $("player-status").textContent = "loading the stems\u2026";
  $("play").disabled = true;
  for (const li of rows.values()) li.classList.toggle("current", li.dataset.id === song.id);
  let buffers;
  try {
    buffers = await Promise.all(song.stems.map(async (key) => {
      const response = await fetch(stemUrl(song, key, "wav", false));
      if (!response.ok) throw new Error(`${key}: ${response.status}`);
      return player.ctx.decodeAudioData(await response.arrayBuffer());
    }));
  } catch (e) {
    if (generation === player.generation) { player.loading = false; $("player-status").textContent = `cannot load the stems (${e.message})`; }
    return;
  }
  if (generation !== player.generation) return;   // another song was opened meanwhile
  player.tracks = song.stems.map((key, i) => {
    const gain = player.ctx.createGain();
    gain.connect(player.ctx.destination);
    return {key, buffer: buffers[i], gain, volume: 1, muted: key.startsWith("no_"), solo: false, row: null};
  });
  player.duration = Math.max(...buffers.map((b) => b.duration));
  player.offset = 0;
  player.loading = false;
  renderTracks();
  renderDownloads();
  applyGains();
  draw();
  $("play").disabled = false;
  $("player-status").textContent = `${song.stems.length} stems \u00b7 ${clock(song.duration)}` +
    (song.residual ? " \u00b7 no_ stems are the mix minus each instrument" : "");
  const t = timings[song.id];
  if (t && !t.playable) t.playable = performance.now();
}

function closePlayer() {
  stopSources();
  player.generation++;
  for (const t of player.tracks) t.gain.disconnect();
  Object.assign(player, {song: null, tracks: [], playing: false, loading: false, offset: 0, duration: 0});
  $("player").hidden = true;
  $("tracks").innerHTML = "";
  $("stem-links").innerHTML = "";
  for (const li of rows.values()) li.classList.remove("current");
  $("play").innerHTML = "&#9654; Play";
}

function stopSources() {
  for (const s of player.sources) { s.onended = null; try { s.stop(); } catch (e) { /* not started */ } }
  player.sources = [];
}

async function play() {
  if (!player.tracks.length || player.playing) return;
  if (player.ctx.state === "suspended") await player.ctx.resume();
  if (player.offset >= player.duration - 0.01) player.offset = 0;
  const when = player.ctx.currentTime + 0.05;       // one start time for all: the stems stay in sync
  player.sources = player.tracks.map((t) => {
    const source = player.ctx.createBufferSource();
    source.buffer = t.buffer;
    source.connect(t.gain);
    source.start(when, player.offset);
    return source;
  });
  player.sources[0].onended = () => { if (player.playing) { pause(); player.offset = 0; draw(); } };
  player.startedAt = when - player.offset;
  player.playing = true;
  $("play").innerHTML = "&#10074;&#10074; Pause";
  cancelAnimationFrame(player.frame);
  player.frame = requestAnimationFrame(tick);
}

function pause() {
  if (!player.playing) return;
  player.offset = position();
  stopSources();
  player.playing = false;
  $("play").innerHTML = "&#9654; Play";
  draw();
}

function seek(seconds) {
  const playing = player.playing;
  pause();
  player.offset = Math.min(Math.max(0, seconds), player.duration);
  if (playing) play(); else draw();
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
    row.innerHTML = '<div class="controls"><span class="key"></span>' +
      '<button class="mute" title="Mute">M</button><button class="solo" title="Solo">S</button>' +
      '<input class="volume" type="range" min="0" max="1.5" step="0.01" value="1" aria-label="Volume"></div>' +
      '<div class="wave"><canvas></canvas><div class="played"></div><div class="cursor"></div></div>';
    row.querySelector(".key").textContent = t.key;
    row.querySelector(".volume").setAttribute("aria-label", `${t.key} volume`);
    row.querySelector(".mute").onclick = () => { t.muted = !t.muted; applyGains(); };
    row.querySelector(".solo").onclick = () => { t.solo = !t.solo; applyGains(); };
    row.querySelector(".volume").oninput = (e) => { t.volume = Number(e.target.value); applyGains(); };
    const wave = row.querySelector(".wave");
    wave.onclick = (e) => {
      const r = wave.getBoundingClientRect();
      seek(player.duration * (e.clientX - r.left) / r.width);
    };
    t.row = row;
    box.appendChild(row);
  }
  // One scale for all the stems (their loudness compared honestly), the loudest filling 90% of the height.
  const scale = 0.9 / Math.max(1e-4, ...player.tracks.map((t) => peak(t.buffer)));
  for (const t of player.tracks) drawWave(t.row.querySelector("canvas"), t.buffer, t.row.style.getPropertyValue("--color"), scale);
}

function peak(buffer) {
  let top = 0;
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < data.length; i += 7) { const v = Math.abs(data[i]); if (v > top) top = v; }
  }
  return top;
}

function drawWave(canvas, buffer, color, scale) {
  // Min/max of the samples under each pixel column, channels averaged: the waveform picture.
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio)), height = Math.round(canvas.clientHeight * ratio);
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext("2d");
  const channels = [...Array(buffer.numberOfChannels).keys()].map((c) => buffer.getChannelData(c));
  const n = buffer.length, per = n / width, mid = height / 2;
  g.fillStyle = color;
  for (let x = 0; x < width; x++) {
    let lo = 0, hi = 0;
    const start = Math.floor(x * per), end = Math.min(n, Math.floor((x + 1) * per));
    const step = Math.max(1, Math.floor((end - start) / 256));   // enough samples per column for the envelope
    for (let i = start; i < end; i += step) {
      let v = 0;
      for (const ch of channels) v += ch[i];
      v /= channels.length;
      if (v < lo) lo = v; else if (v > hi) hi = v;
    }
    const top = mid - Math.min(1, hi * scale) * mid, bottom = mid - Math.max(-1, lo * scale) * mid;
    g.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
}

function renderDownloads() {
  const song = player.song, format = $("format").value, box = $("stem-links");
  box.innerHTML = "";
  for (const key of song.stems) {
    const a = document.createElement("a");
    a.className = "button stem-link";
    a.textContent = key;
    a.href = stemUrl(song, key, format, true);
    a.setAttribute("download", "");
    box.appendChild(a);
  }
  $("zip").href = withToken(`/api/songs/${song.id}/zip?format=${format}`);
}

function draw() {
  // The position in the time label, the slider and on every waveform.
  if (!player.tracks.length) return;
  const p = position(), fraction = player.duration ? p / player.duration : 0;
  $("time").textContent = `${clock(p)} / ${clock(player.duration)}`;
  if (document.activeElement !== $("seek")) $("seek").value = Math.round(1000 * fraction);
  for (const t of player.tracks) {
    t.row.querySelector(".cursor").style.left = `${(100 * fraction).toFixed(2)}%`;
    t.row.querySelector(".played").style.width = `${(100 * fraction).toFixed(2)}%`;
  }
}

function tick() {
  // Redrawn every frame only while playing (no work for an idle page).
  draw();
  if (player.playing) player.frame = requestAnimationFrame(tick);
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
  $("play").onclick = () => (player.playing ? pause() : play());
  $("seek").oninput = (e) => seek(player.duration * Number(e.target.value) / 1000);
  $("karaoke").onclick = karaoke;
  $("everything").onclick = everything;
  $("format").onchange = () => { if (player.song) renderDownloads(); };
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && e.target === document.body && player.tracks.length) {
      e.preventDefault();
      player.playing ? pause() : play();
    }
  });
  loadConfig().catch((e) => message(`cannot reach cunet ui: ${e.message}`));
  poll();
}

window.cunet = {
  player, timings, play, pause, seek, karaoke, everything,
  state: () => ({
    song: player.song && player.song.id, loading: player.loading, playing: player.playing, position: position(),
    duration: player.duration, contextTime: player.ctx ? player.ctx.currentTime : null,
    tracks: player.tracks.map((t) => ({key: t.key, muted: t.muted, solo: t.solo, volume: t.volume,
                                       gain: t.gain.gain.value})),
  }),
};

init();
