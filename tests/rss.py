"""Peak memory of the current process image, for tests that run a client in a subprocess."""

import resource


def peak_rss_kb() -> int:
    """VmHWM of this process image; ru_maxrss would carry the forking parent's RSS across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
