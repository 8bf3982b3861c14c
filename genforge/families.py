"""The one list of task families. Importing this module imports each family's files, and their
decorators fill genforge.registry; nothing is found by scanning file or folder names.

A family is its network file(s) in models/, its task file in tasks/ (config class, Task subclass,
data setup), its data file in data/ and its inference wrapper in deploy/: adding one means adding
those files and their line here (README: Adding a model, a loss or a task family)."""

# generation: DCGAN (GAN, WGAN, WGAN-GP, hinge, LSGAN, conditional) and the VAE
import genforge.models.dcgan
import genforge.models.vae
import genforge.tasks.gan
import genforge.tasks.vae
import genforge.deploy.generator

# super-resolution: ISRNet and LapSRN, pixel loss then adversarial fine-tuning
import genforge.models.isrnet
import genforge.models.lapsrn
import genforge.tasks.superres
import genforge.deploy.upscaler

# image synthesis and translation: Pix2Pix, CycleGAN, SPADE
import genforge.models.unet
import genforge.models.resnet_gen
import genforge.models.spade
import genforge.tasks.translation
import genforge.tasks.cyclegan
import genforge.tasks.spade
import genforge.deploy.translator  # noqa: F401
