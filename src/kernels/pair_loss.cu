// seppoc custom kernel: fused per-sample denoising errors + DPO-family pair loss + its gradient w.r.t. the
// policy's predicted eps. Compiled at run time with NVRTC (src/kernels/cuda.rs); CPU twin: twin::pair_loss.
//
// Rows hold C*H*W = n values; rows 0..P are the "winner" images, rows P..2P the "loser" images (for SePPO
// the reference samples). For pair i:
//   e_pol[r] = mean_j (pred_pol[r, j] - eps[r, j])^2      e_ref[r] likewise with pred_ref
//   z_i      = -0.5 * beta * ((e_pol[w] - e_ref[w]) - gate[i] * (e_pol[l] - e_ref[l]))
//   loss[i]  = -logsigmoid(z_i) = softplus(-z_i)
//   L        = mean_i loss[i]
//   dL/dpred_pol[w, j] =  beta * sigmoid(-z_i) / (P * n) * (pred_pol[w, j] - eps[w, j])
//   dL/dpred_pol[l, j] = -gate[i] * beta * sigmoid(-z_i) / (P * n) * (pred_pol[l, j] - eps[l, j])

#define SEPPOC_BLOCK 256

// One block of SEPPOC_BLOCK threads per pair: one pass reads the six rows, a shared-memory tree reduction
// gives the four errors, thread 0 computes the loss and the two gradient coefficients, and a second pass
// writes the gradient rows.
extern "C" __global__ void pair_loss_fwd(const float *pred_pol, const float *pred_ref, const float *eps,
                                         const float *gate, float beta, int n_pairs, int n, float *e_pol,
                                         float *e_ref, float *loss, float *grad) {
    __shared__ float sums[4 * SEPPOC_BLOCK];
    __shared__ float coef[2];
    const int i = blockIdx.x;
    const int tid = threadIdx.x;
    if (i >= n_pairs) {
        return;
    }
    const size_t w = (size_t)i * (size_t)n;
    const size_t l = (size_t)(n_pairs + i) * (size_t)n;
    float pw = 0.0f, rw = 0.0f, pl = 0.0f, rl = 0.0f;
    for (int j = tid; j < n; j += SEPPOC_BLOCK) {
        const float dpw = pred_pol[w + j] - eps[w + j];
        const float drw = pred_ref[w + j] - eps[w + j];
        const float dpl = pred_pol[l + j] - eps[l + j];
        const float drl = pred_ref[l + j] - eps[l + j];
        pw += dpw * dpw;
        rw += drw * drw;
        pl += dpl * dpl;
        rl += drl * drl;
    }
    sums[tid] = pw;
    sums[SEPPOC_BLOCK + tid] = rw;
    sums[2 * SEPPOC_BLOCK + tid] = pl;
    sums[3 * SEPPOC_BLOCK + tid] = rl;
    __syncthreads();
    for (int stride = SEPPOC_BLOCK / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            for (int k = 0; k < 4; k++) {
                sums[k * SEPPOC_BLOCK + tid] += sums[k * SEPPOC_BLOCK + tid + stride];
            }
        }
        __syncthreads();
    }
    if (tid == 0) {
        const float inv_n = 1.0f / (float)n;
        const float epw = sums[0] * inv_n;
        const float erw = sums[SEPPOC_BLOCK] * inv_n;
        const float epl = sums[2 * SEPPOC_BLOCK] * inv_n;
        const float erl = sums[3 * SEPPOC_BLOCK] * inv_n;
        e_pol[i] = epw;
        e_ref[i] = erw;
        e_pol[n_pairs + i] = epl;
        e_ref[n_pairs + i] = erl;
        const float s = gate[i];
        const float z = -0.5f * beta * ((epw - erw) - s * (epl - erl));
        // softplus(-z) written so that neither branch overflows.
        loss[i] = fmaxf(-z, 0.0f) + log1pf(expf(-fabsf(z)));
        const float sig = 1.0f / (1.0f + expf(z));
        const float c = beta * sig * inv_n / (float)n_pairs;
        coef[0] = c;
        coef[1] = -s * c;
    }
    __syncthreads();
    const float cw = coef[0];
    const float cl = coef[1];
    for (int j = tid; j < n; j += SEPPOC_BLOCK) {
        grad[w + j] = cw * (pred_pol[w + j] - eps[w + j]);
        grad[l + j] = cl * (pred_pol[l + j] - eps[l + j]);
    }
}

// dst[k] += scale[0] * src[k]: adds the stored gradient, times the upstream gradient of the loss (a device
// scalar, so backward needs no host round trip), into dfdx's gradient buffer of the policy prediction.
extern "C" __global__ void axpy_scaled(float *dst, const float *src, const float *scale, int len) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < len) {
        dst[k] += scale[0] * src[k];
    }
}
