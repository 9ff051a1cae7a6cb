// seppoc custom kernel: one fused DDIM step with classifier-free guidance. Compiled at run time with NVRTC
// (src/kernels/cuda.rs); CPU twin: twin::ddim_cfg_step. Elementwise, one thread per value:
//   e    = eps_uncond + w * (eps_cond - eps_uncond)                  (guided eps)
//   x0   = clamp((x - sqrt(1 - ab) * e) / sqrt(ab), -1, 1)           (x0 prediction)
//   e'   = (x - sqrt(ab) * x0) / sqrt(1 - ab)                        (eps consistent with the clamped x0)
//   out  = sqrt(ab_prev) * x0 + dir * e' + sigma * noise             (noise only when has_noise != 0)
// with dir = sqrt(1 - ab_prev - sigma^2) and sigma = eta * sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)),
// both computed on the host in f64. The six scalars arrive as one device array
// coef = [w, sqrt(ab), sqrt(1 - ab), sqrt(ab_prev), dir, sigma] (a launch takes at most 12 arguments).

extern "C" __global__ void ddim_cfg_step(const float *x, const float *eps_cond, const float *eps_uncond,
                                         const float *noise, int has_noise, const float *coef, int len,
                                         float *out) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= len) {
        return;
    }
    const float w = coef[0], sqrt_ab = coef[1], sqrt_one_minus_ab = coef[2];
    const float sqrt_ab_prev = coef[3], dir = coef[4], sigma = coef[5];
    const float u = eps_uncond[k];
    const float e = u + w * (eps_cond[k] - u);
    const float x0 = fminf(fmaxf((x[k] - sqrt_one_minus_ab * e) / sqrt_ab, -1.0f), 1.0f);
    const float e2 = (x[k] - sqrt_ab * x0) / sqrt_one_minus_ab;
    const float z = has_noise ? noise[k] : 0.0f;
    out[k] = sqrt_ab_prev * x0 + dir * e2 + sigma * z;
}
