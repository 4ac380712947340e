"""A quick password hasher for the test process: PBKDF2 at 1,000 iterations instead of Django's
million (0.2 s a check). Its hashes carry their iteration count, so the real settings of the
processes the tests start (daphne, workers) check them too."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1_000
