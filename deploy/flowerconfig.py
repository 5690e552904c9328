"""Flower's configuration in the image (`celery -A tasks flower --conf=THIS_FILE`).

Flower reads its basic auth from a command-line flag or an environment variable; here it comes
from cutout's setting CUTOUT_FLOWER_BASIC_AUTH, which a secret file can give
(CUTOUT_FLOWER_BASIC_AUTH_FILE), so the password is neither on a command line nor in the
environment. Tornado reads the module-level names that match Flower's options.
"""

from config import get_settings

basic_auth = [get_settings().flower_basic_auth.get_secret_value()]
