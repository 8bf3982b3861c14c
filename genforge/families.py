"""The one list of task families. registry.load() imports these modules, and their decorators fill
genforge.registry; nothing is found by scanning file or folder names.

A family is its network file(s) in models/, its task file in tasks/ (config class, Task subclass,
data setup), its data file in data/ and its inference wrapper in deploy/: adding one means adding
those files and their names here (README: Adding a model, a loss or a task family)."""

FAMILIES = {
    # DCGAN (GAN, WGAN, WGAN-GP, hinge, LSGAN, conditional) and the VAE
    "generation": ("genforge.models.dcgan", "genforge.models.vae", "genforge.tasks.gan", "genforge.tasks.vae",
                   "genforge.deploy.generator"),
    # ISRNet, LapSRN and the fast RepSR, pixel loss then adversarial fine-tuning
    "super-resolution": ("genforge.models.isrnet", "genforge.models.lapsrn", "genforge.models.repsr",
                         "genforge.tasks.superres",
                         "genforge.deploy.upscaler"),
    # image synthesis and translation: Pix2Pix, CycleGAN, SPADE
    "translation": ("genforge.models.unet", "genforge.models.resnet_gen", "genforge.models.spade",
                    "genforge.tasks.translation", "genforge.tasks.cyclegan", "genforge.tasks.spade",
                    "genforge.deploy.translator"),
    # frame interpolation: VFINet (flow-based, coarse to fine) on real clips and synthetic motion
    "interpolation": ("genforge.models.vfinet", "genforge.tasks.interpolation", "genforge.deploy.interpolator"),
    # text generation: CharGPT, a byte-level causal transformer, on CPython's reference text or text:PATH
    "text": ("genforge.models.chargpt", "genforge.tasks.text", "genforge.deploy.texter"),
    # video generation: VideoGAN (content code + GRU motion codes, image and video critics) on moving digits
    "video-generation": ("genforge.models.videogan", "genforge.tasks.videogan", "genforge.deploy.videogen"),
}
