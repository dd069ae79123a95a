// One training step of TransE over a batch of B "sides" (a chunk's queries
// against its candidates, as in engine/src/train.rs), entirely on the GPU:
//
//   gather_q  q[b,i]   = emb[qn[b,i]] + sgn[b,i] * rel[qr[b,i]]
//   scores    s[b,i,j] = f(q[b,i], emb[kn[b,j]])       f: dot, −‖·‖₂ or −‖·‖₁
//   loss      g[b,i,j] = ∂L/∂s (margin, softmax or self-adversarial), loss[b,i]
//   grad_q    dq[b,i]  = Σ_j g[b,i,j] ∂s/∂q
//   grad_k    dk[b,j]  = Σ_i g[b,i,j] ∂s/∂k
//   apply     for every row the batch touched: sum its contributions (dq and
//             dk rows, listed by the host in a fixed order), then a row-wise
//             Adagrad (or SGD) step and the optional max-norm projection.
//
// WGSL has no float atomics; `apply` gives each touched row one workgroup that
// reads its contributions in list order, so the sums, and the run, are
// deterministic. Row i's positive is column i; its negatives are the columns
// j ≥ c and, with batch negatives, the other columns j < c.

struct Params {
    b: u32,          // sides in the batch
    c: u32,          // queries per side
    m: u32,          // candidates per side
    d: u32,          // dimension
    score: u32,      // 0 dot, 1 L2, 2 L1
    loss: u32,       // 0 margin, 1 softmax, 2 adversarial
    batch_neg: u32,  // 1: the side's other positives are negatives too
    rows: u32,       // touched rows (apply)
    margin: f32,
    temperature: f32,
    lr: f32,
    rel_lr: f32,
    max_norm: f32,
    adagrad: u32,    // 1 Adagrad, 0 SGD
    node_rows: u32,  // state[] holds node rows first, then relation rows
    reg: f32,        // penalty weight on node rows (0: none)
    reg_kind: u32,   // 0 L2 (2λx), 1 N3 (3λx|x|)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> emb: array<f32>;
@group(0) @binding(2) var<storage, read_write> rel: array<f32>;
// qn[b·c] | qr[b·c] | kn[b·m]
@group(0) @binding(3) var<storage, read> idx: array<u32>;
// sgn[b·c] | w[b·c]
@group(0) @binding(4) var<storage, read> sw: array<f32>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> s: array<f32>;
@group(0) @binding(7) var<storage, read_write> g: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
// target[rows] | offset[rows + 1] | entry[..]; a target or entry with bit 31
// set is a relation row (target) or a dk row (entry).
@group(0) @binding(10) var<storage, read> csr: array<u32>;
@group(0) @binding(11) var<storage, read> csr_scale: array<f32>;
@group(0) @binding(12) var<storage, read_write> state: array<f32>;
@group(0) @binding(13) var<storage, read_write> loss_out: array<f32>;

const HIGH: u32 = 0x80000000u;

fn qn(bi: u32) -> u32 { return idx[bi]; }
fn qr(bi: u32) -> u32 { return idx[p.b * p.c + bi]; }
fn kn(bj: u32) -> u32 { return idx[2u * p.b * p.c + bj]; }

@compute @workgroup_size(64)
fn gather_q(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * 65535u * 64u;
    if (t >= p.b * p.c * p.d) { return; }
    let bi = t / p.d;
    let l = t % p.d;
    q[t] = emb[qn(bi) * p.d + l] + sw[bi] * rel[qr(bi) * p.d + l];
}

var<workgroup> q_tile: array<array<f32, 16>, 16>;
var<workgroup> k_tile: array<array<f32, 16>, 16>;

fn term(a: f32, b: f32) -> f32 {
    switch p.score {
        case 0u: { return a * b; }
        case 1u: { let x = a - b; return x * x; }
        default: { return abs(a - b); }
    }
}

// Workgroup (x, y, z) = (candidate tile, query tile, side).
@compute @workgroup_size(16, 16)
fn scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = wid.z;
    let i = wid.y * 16u + lid.y;
    let j = wid.x * 16u + lid.x;
    let q_row = wid.y * 16u + lid.y;
    let k_row = wid.x * 16u + lid.y;
    var acc = 0.0;
    for (var d0 = 0u; d0 < p.d; d0 += 16u) {
        let col = d0 + lid.x;
        var a = 0.0;
        var v = 0.0;
        if (q_row < p.c && col < p.d) { a = q[(b * p.c + q_row) * p.d + col]; }
        if (k_row < p.m && col < p.d) { v = emb[kn(b * p.m + k_row) * p.d + col]; }
        q_tile[lid.y][lid.x] = a;
        k_tile[lid.y][lid.x] = v;
        workgroupBarrier();
        for (var t = 0u; t < 16u; t++) {
            acc += term(q_tile[lid.y][t], k_tile[lid.x][t]);
        }
        workgroupBarrier();
    }
    if (i < p.c && j < p.m) {
        let at = (b * p.c + i) * p.m + j;
        switch p.score {
            case 0u: { s[at] = acc; }
            case 1u: { s[at] = -sqrt(acc); }
            default: { s[at] = -acc; }
        }
    }
}

fn is_neg(i: u32, j: u32) -> bool {
    return j != i && (j >= p.c || p.batch_neg == 1u);
}

fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// One invocation per query row (b, i).
@compute @workgroup_size(64)
fn loss(@builtin(global_invocation_id) gid: vec3<u32>) {
    let bi = gid.x;
    if (bi >= p.b * p.c) { return; }
    let i = bi % p.c;
    let row = bi * p.m;
    let w = sw[p.b * p.c + bi];
    let pos = s[row + i];
    var total = 0.0;
    for (var j = 0u; j < p.m; j++) { g[row + j] = 0.0; }
    if (p.loss == 0u) {
        var pulled = 0.0;
        for (var j = 0u; j < p.m; j++) {
            if (!is_neg(i, j)) { continue; }
            let v = p.margin - pos + s[row + j];
            if (v > 0.0) {
                total += w * v;
                g[row + j] = w;
                pulled += w;
            }
        }
        g[row + i] = -pulled;
    } else if (p.loss == 1u) {
        var mx = pos;
        for (var j = 0u; j < p.m; j++) { if (is_neg(i, j)) { mx = max(mx, s[row + j]); } }
        var z = exp(pos - mx);
        for (var j = 0u; j < p.m; j++) {
            if (is_neg(i, j)) {
                let e = exp(s[row + j] - mx);
                g[row + j] = e;
                z += e;
            }
        }
        total = w * (mx + log(z) - pos);
        for (var j = 0u; j < p.m; j++) { if (is_neg(i, j)) { g[row + j] *= w / z; } }
        g[row + i] = w * (exp(pos - mx) / z - 1.0);
    } else {
        var mx = -3.4e38;
        for (var j = 0u; j < p.m; j++) { if (is_neg(i, j)) { mx = max(mx, s[row + j]); } }
        var z = 0.0;
        for (var j = 0u; j < p.m; j++) {
            if (is_neg(i, j)) {
                let e = exp(p.temperature * (s[row + j] - mx));
                g[row + j] = e;
                z += e;
            }
        }
        var l = softplus(-(p.margin + pos));
        for (var j = 0u; j < p.m; j++) {
            if (is_neg(i, j)) {
                let pj = g[row + j] / z;
                l += pj * softplus(p.margin + s[row + j]);
                g[row + j] = w * pj * sigmoid(p.margin + s[row + j]);
            }
        }
        total = w * l;
        g[row + i] = -w * sigmoid(-(p.margin + pos));
    }
    loss_out[bi] = total;
}

// ∂s/∂q·g for one pair: dot: g·k; L2: g·(k − q)/‖q − k‖; L1: −g·sign(q − k).
fn dterm(qv: f32, kv: f32, gv: f32, sv: f32) -> f32 {
    switch p.score {
        case 0u: { return gv * kv; }
        case 1u: {
            if (sv < 0.0) { return gv * (kv - qv) / -sv; }
            return 0.0;
        }
        default: { return -gv * sign(qv - kv); }
    }
}

@compute @workgroup_size(64)
fn grad_q(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * 65535u * 64u;
    if (t >= p.b * p.c * p.d) { return; }
    let bi = t / p.d;
    let l = t % p.d;
    let b = bi / p.c;
    let qv = q[t];
    var acc = 0.0;
    for (var j = 0u; j < p.m; j++) {
        let gv = g[bi * p.m + j];
        if (gv == 0.0) { continue; }
        acc += dterm(qv, emb[kn(b * p.m + j) * p.d + l], gv, s[bi * p.m + j]);
    }
    dq[t] = acc;
}

// ∂s/∂k is −∂s/∂q for the distances and g·q for dot.
@compute @workgroup_size(64)
fn grad_k(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * 65535u * 64u;
    if (t >= p.b * p.m * p.d) { return; }
    let bj = t / p.d;
    let l = t % p.d;
    let b = bj / p.m;
    let j = bj % p.m;
    let kv = emb[kn(bj) * p.d + l];
    var acc = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let at = (b * p.c + i) * p.m + j;
        let gv = g[at];
        if (gv == 0.0) { continue; }
        let qv = q[(b * p.c + i) * p.d + l];
        if (p.score == 0u) {
            acc += gv * qv;
        } else {
            acc -= dterm(qv, kv, gv, s[at]);
        }
    }
    dk[t] = acc;
}

var<workgroup> part: array<f32, 64>;

// Deterministic tree sum of `part` across the workgroup.
fn reduce(lid: u32) -> f32 {
    for (var off = 32u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if (lid < off) { part[lid] += part[lid + off]; }
    }
    workgroupBarrier();
    let total = part[0];
    workgroupBarrier();
    return total;
}

// One workgroup per touched row (x + y·65535).
@compute @workgroup_size(64)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let u = wid.x + wid.y * 65535u;
    if (u >= p.rows) { return; }
    let lid = lid3.x;
    let tgt = csr[u];
    let is_rel = (tgt & HIGH) != 0u;
    let r = tgt & ~HIGH;
    let off = p.rows;
    let first = csr[off + u];
    let last = csr[off + u + 1u];
    let entries = 2u * p.rows + 1u;
    // This thread's dimensions: lid, lid + 64, ... (at most 16 per thread, d ≤ 1024).
    var grad: array<f32, 16>;
    var sq = 0.0;
    for (var k = 0u; k * 64u + lid < p.d; k++) {
        let l = k * 64u + lid;
        var acc = 0.0;
        for (var e = first; e < last; e++) {
            let code = csr[entries + e];
            let from_k = (code & HIGH) != 0u;
            let at = (code & ~HIGH) * p.d + l;
            var v = 0.0;
            if (from_k) { v = dk[at]; } else { v = dq[at]; }
            acc += csr_scale[e] * v;
        }
        if (!is_rel && p.reg > 0.0) {
            let x = emb[r * p.d + l];
            if (p.reg_kind == 0u) { acc += 2.0 * p.reg * x; } else { acc += 3.0 * p.reg * x * abs(x); }
        }
        grad[k] = acc;
        sq += acc * acc;
    }
    part[lid] = sq;
    let total = reduce(lid);
    var lr = p.lr;
    var st = r;
    if (is_rel) {
        lr = p.rel_lr;
        st = p.node_rows + r;
    }
    var scale = lr;
    if (p.adagrad == 1u) {
        let acc_state = state[st] + total / f32(p.d);
        scale = lr / (sqrt(acc_state) + 1e-10);
        workgroupBarrier();
        if (lid == 0u) { state[st] = acc_state; }
    }
    var norm2 = 0.0;
    for (var k = 0u; k * 64u + lid < p.d; k++) {
        let l = k * 64u + lid;
        var x = 0.0;
        if (is_rel) { x = rel[r * p.d + l]; } else { x = emb[r * p.d + l]; }
        x -= scale * grad[k];
        grad[k] = x;
        norm2 += x * x;
    }
    part[lid] = norm2;
    let n2 = reduce(lid);
    var shrink = 1.0;
    if (!is_rel && p.max_norm > 0.0 && p.score != 0u) {
        let n = sqrt(n2);
        if (n > p.max_norm) { shrink = p.max_norm / n; }
    }
    for (var k = 0u; k * 64u + lid < p.d; k++) {
        let l = k * 64u + lid;
        if (is_rel) { rel[r * p.d + l] = grad[k]; } else { emb[r * p.d + l] = grad[k] * shrink; }
    }
}
