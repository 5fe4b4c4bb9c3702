"""The one Java check: Kafka 4 and Spark 4 both need Java 17 or newer on PATH."""

from __future__ import annotations

import re
import shutil
import subprocess

MIN_JAVA = 17


def java_major_version() -> int | None:
    """Major version of `java` on PATH, or None when there is none or it cannot say."""
    if shutil.which("java") is None:
        return None
    result = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if found is None:
        return None
    major, minor = int(found[1]), int(found[2] or 0)
    return minor if major == 1 else major  # "1.8.0" is Java 8


def java_problem() -> str | None:
    """One sentence saying what to do about Java, or None when it is fine."""
    version = java_major_version()
    if version is None:
        return (
            f"Java is not installed (or `java -version` fails): install a JDK {MIN_JAVA}+, "
            "for example `apt-get install openjdk-17-jdk-headless`."
        )
    if version < MIN_JAVA:
        return f"Java {version} is too old: Kafka 4 and Spark 4 need Java {MIN_JAVA} or newer."
    return None
