// Reading Streamlit's BackMsg (the protobuf messages the browser sends to the server)
// without its generated code: the only place that knows the wire format and the field
// numbers, which are Streamlit internals (tested against messages encoded by the
// installed Streamlit's own protobuf classes).
//
//   BackMsg            11 rerun_script: ClientState
//   ClientState         2 widget_states: WidgetStates
//   WidgetStates        1 widgets: repeated WidgetState
//   WidgetState         1 id: string, 6 string_value: string

const utf8 = new TextDecoder();

// The top-level fields of a protobuf message: [[field number, value]], a value being a
// number (varint) or the bytes of a length-delimited field (fixed-width ones skipped).
export function fields(b) {
  const out = [];
  let i = 0;
  const varint = () => {
    let x = 0, f = 1, c;
    do { if (i >= b.length) throw new Error('varint'); c = b[i++]; x += (c & 127) * f; f *= 128; } while (c & 128);
    return x;
  };
  while (i < b.length) {
    const k = varint(), no = Math.floor(k / 8), wt = k % 8;
    if (wt === 0) out.push([no, varint()]);
    else if (wt === 2) { const n = varint(); if (i + n > b.length) throw new Error('len'); out.push([no, b.subarray(i, i + n)]); i += n; }
    else if (wt === 1) i += 8;
    else if (wt === 5) i += 4;
    else throw new Error('wire type');
  }
  return out;
}

// The embedded messages (length-delimited values) of field `no`.
export function sub(msg, no) {
  return fields(msg).filter(([n, v]) => n === no && v instanceof Uint8Array).map(([, v]) => v);
}

// The string-valued widget states a BackMsg reports, as [widget id, string value], in
// message order (lazily: a malformed widget further on throws only when reached).
export function* stringWidgetStates(bytes) {
  for (const cs of sub(bytes, 11)) for (const ws of sub(cs, 2)) for (const wd of sub(ws, 1)) {
    const f = fields(wd);
    const id = f.find(([n]) => n === 1), val = f.find(([n]) => n === 6);
    if (!id || !val) continue;
    yield [utf8.decode(id[1]), utf8.decode(val[1])];
  }
}
