"""jaxdl: a JAX functional deep-learning toolkit that follows the lecture
"A practical introduction to deep learning".

Layers are pure ``(init, apply)`` pairs, parameters are plain dicts, randomness
flows through explicit keys. The names a notebook user types are here::

    import jaxdl as dl
    model = dl.serial(dl.Dense(3), dl.Sigmoid(), dl.Dense(1))
"""

from jaxdl import allocator  # first: glibc settings for XLA's CPU scratch memory, before JAX starts threads
from jaxdl.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from jaxdl.compiler import jit
from jaxdl.devices import make_mesh
from jaxdl.core import (
    Layer,
    LayerError,
    abstract_init,
    apply_child,
    child_keys,
    composite,
    count_params,
    init_child,
    initial_state,
    parallel,
    serial,
    summary,
)
from jaxdl.layers import (
    AvgPool,
    BatchNorm,
    CharCNN,
    Conv,
    Dense,
    Dropout,
    Embedding,
    FanInConcat,
    FanInSum,
    FanOut,
    Flatten,
    Identity,
    LayerNorm,
    LogSoftmax,
    MaxPool,
    RandomShift,
    ReLU,
    Sigmoid,
    Softmax,
    Step,
    Take,
    Tanh,
    WordDropout,
)
from jaxdl.augment import RandomAffine, affine_transform
from jaxdl.crf import CRF, bio_constraints
from jaxdl.losses import binary_cross_entropy, mean_squared_error, softmax_cross_entropy
from jaxdl.metrics import Scores, accuracy, binary_scores, bio_spans, confusion_matrix, span_scores
from jaxdl.data import DataError, load_image_classification
from jaxdl.precision import mixed_precision
from jaxdl.models import char_language_model, cnn, logistic_unit, mlp, perceptron, rnn_classifier, tagger
from jaxdl.recurrent import RNN, AttentionPool, GRUCell, LSTMCell, SimpleCell
from jaxdl.loop import EarlyStopping, NonFiniteLossError, fit, scores_by_step
from jaxdl.train import (
    TrainState,
    average_weights,
    ensemble_predict,
    eval_params,
    evaluate,
    forward,
    freeze,
    make_eval_step,
    make_multi_step,
    make_per_example_train_step,
    make_train_step,
    per_example_grads,
    predict,
    train_seeds,
)

__version__ = "0.1.0"
