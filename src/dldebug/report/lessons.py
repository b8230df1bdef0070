"""The eleven lessons (docs/lessons.md): a title and one paragraph each, shown beside the evidence.

A test keeps this text equal to docs/lessons.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LESSONS", "Lesson"]


@dataclass(frozen=True)
class Lesson:
    """One lesson: its number, title and explanation (what goes wrong, and the tool)."""

    number: int
    title: str
    explanation: str


LESSONS: dict[int, Lesson] = {
    1: Lesson(1, 'Equivariance vs invariance', (
        'Segmentation, detection and motion estimation need outputs that move *with* the input (translate the '
        'image, the mask translates): equivariance. Image classification needs outputs that stay put: invariance.'
        ' Pooling and strided down-sampling buy invariance and destroy equivariance, which can silently hurt '
        'dense-prediction tasks. Tool: measure, per layer, how far a model is from equivariant or invariant under'
        ' translation (and flip/rotation), and name the first layer that breaks the property the task needs.'
    )),
    2: Lesson(2, 'The early loss plateau', (
        'Training a vision model from scratch on RGB data (ImageNet, UCF101) can show a flat loss for the first '
        'epochs, even at a low learning rate, before it starts to fall; compact inputs such as skeleton joints '
        'fall at once. It is not a bug: keep training, or start from pretrained low-level features. Tool: read a '
        'loss curve (live or from logs) and tell a *plateau that will break* from a run that is truly stuck, '
        'diverging or oscillating — with the evidence.'
    )),
    3: Lesson(3, 'Training loss never falls: try a smaller network', (
        'A network that cannot even over-fit a small training set may have too many parameters for it — typically'
        ' a huge fully connected layer after the last convolution (in the notes: a C3D feature map of 512x128x171'
        ' fed to FC layers on a small lab data set; a 1x1 convolution down to one channel before the FC fixed '
        'it). Tool: a parameter audit that flags layers holding most parameters relative to the data size, and an'
        ' "can it over-fit one batch?" test.'
    )),
    4: Lesson(4, 'Transfer learning: keep the generic layers, drop the task-specific ones', (
        'Pretrained backbones (ResNet, VGG) carry task-specific layers at the end; the closer to the output, the '
        'more task-specific. Usually one keeps the convolutional stack plus the first FC layer (fc_1) as the '
        'feature and drops the rest. Tool: cut a model at a named layer into a feature extractor, and report '
        'which layers are task heads.'
    )),
    5: Lesson(5, 'Locally connected layers', (
        'Weight sharing assumes local image statistics are the same everywhere. Faces break that assumption, so '
        'DeepFace uses locally connected (unshared) layers: Conv 32@11x11x3 -> max-pool 3x3/2 -> Conv 16@9x9 -> '
        'LocalConv 16@9x9 -> LocalConv 16@7x7 -> LocalConv 16@5x5 -> FC 4096 -> softmax 4030. Keras had '
        'LocallyConnected2D; PyTorch has none (only fold/unfold to build one). Tool: a fast, tested '
        'LocallyConnected1d/2d for PyTorch.'
    )),
    6: Lesson(6, 'A peculiar over-fitting', (
        'With attention applied as x * (1 + a), a in [0,1], one logit became orders of magnitude larger than the '
        'rest (20.03 against 0.03 and 0.20); cross-entropy sat near 0.0000 and oscillated. Tool: watch logits and'
        ' flag over-confident, exploding logit gaps and a loss pinned near zero, with remedies.'
    )),
    7: Lesson(7, 'Compressing fully connected layers with truncated SVD', (
        'y = Wx + b with W (m x n) costs m*n. Keep the top t singular values: W ~ U_t S_t V_t^T, and replace the '
        'layer by two linear layers with no non-linearity between them: first V_t^T (t x n, no bias), then U_t '
        'S_t (m x t, with the original bias). Parameters fall from m*n to t*(m+n), worth it when t << min(m, n). '
        "Tool: compress a model's linear layers, choosing ranks, and report size, speed and accuracy cost."
    )),
    8: Lesson(8, 'CTC loss turns NaN', (
        'CTC needs C+1 output classes: the C labels plus the blank. Forgetting the +1 (for example on the layer '
        'after the LSTM) gives NaN losses and exploding gradients. Tool: validate a CTC set-up (class count, '
        'blank index, log-softmax, lengths) before training, and locate the samples that make it infinite.'
    )),
    9: Lesson(9, 'Evaluating a pretrained model with misaligned labels', (
        'Evaluating a pretrained Kinetics-400 action model, the author numbered the 400 class folders by sorted '
        'os.listdir() order — not the order the model was trained with — and got terrible accuracy. Tool: detect '
        "that a model's class indices are permuted relative to a data set's labels, and recover the mapping."
    )),
    10: Lesson(10, 'Debugging a port between frameworks', (
        "PyTorch, TensorFlow, Caffe2 differ in low-level numerics and in layer defaults (BatchNorm's eps, for "
        'one). Load the same weights in both, feed the same input (an all-ones tensor, say), and compare each '
        "layer's output (e.g. its mean) to find the first layer that diverges. Tool: layer-by-layer diff of two "
        'models across frameworks, naming the first divergent layer and the likely cause.'
    )),
    11: Lesson(11, 'Larger batch, larger learning rate', (
        'Larger batches lower the gradient noise, so the learning rate can grow. Goyal et al. (2017) train '
        'ResNet-50 with lr = 0.1 x b / 256 (linear scaling) and a gradual warm-up; He et al. (2019, Bag of '
        "Tricks) use the same rule. Tool: scale learning rates by rule, warm them up, and warn when a run's batch"
        ' size changed without its learning rate.'
    )),
}
