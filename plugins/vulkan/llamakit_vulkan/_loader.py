"""Listing Vulkan physical devices through the system loader, without ggml.

ggml-vulkan hides CPU-type devices (lavapipe) unless ``GGML_VK_VISIBLE_DEVICES`` names
them, and throws (aborting the process) on an index that does not exist, so admitting a
CPU device needs the real device list first. Five loader calls through ctypes give it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["PhysicalDevice", "physical_devices"]

_TYPES = {0: "other", 1: "igpu", 2: "gpu", 3: "virtual", 4: "cpu"}
_INSTANCE_CREATE_INFO = 1
_PROPERTIES_BYTES = 4096  # VkPhysicalDeviceProperties is 824 bytes; room to spare


@dataclass(frozen=True)
class PhysicalDevice:
    index: int
    name: str
    type: str


class _InstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p),
                ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


@lru_cache(maxsize=1)
def physical_devices() -> tuple[PhysicalDevice, ...]:
    """Every physical device the Vulkan loader reports, in its order; () without a loader.

    Asked once per process (creating a Vulkan instance takes milliseconds, and both the
    pre-build check and the pre-load setup need the list; devices do not come and go)."""
    name = ctypes.util.find_library("vulkan") or "libvulkan.so.1"
    try:
        vk = ctypes.CDLL(name)
    except OSError:
        return ()
    vk.vkCreateInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    vk.vkCreateInstance.restype = ctypes.c_int
    vk.vkEnumeratePhysicalDevices.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    vk.vkEnumeratePhysicalDevices.restype = ctypes.c_int
    vk.vkGetPhysicalDeviceProperties.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    vk.vkGetPhysicalDeviceProperties.restype = None
    vk.vkDestroyInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    vk.vkDestroyInstance.restype = None
    info = _InstanceCreateInfo(sType=_INSTANCE_CREATE_INFO)
    instance = ctypes.c_void_p()
    if vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return ()
    try:
        count = ctypes.c_uint32()
        if vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None) != 0:
            return ()
        handles = (ctypes.c_void_p * count.value)()
        if vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles) not in (0, 5):
            return ()
        found = []
        for index in range(count.value):
            props = ctypes.create_string_buffer(_PROPERTIES_BYTES)
            vk.vkGetPhysicalDeviceProperties(handles[index], props)
            kind = int.from_bytes(props.raw[16:20], "little")
            label = props.raw[20:276].split(b"\0", 1)[0].decode("utf-8", errors="replace")
            found.append(PhysicalDevice(index=index, name=label, type=_TYPES.get(kind, "other")))
        return tuple(found)
    finally:
        vk.vkDestroyInstance(instance, None)
