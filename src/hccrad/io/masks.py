"""Label conventions and connected-component helpers shared by every stage.

Labels: 0 background, 1 liver, 2 tumor, 3 portal vein. Connectivity is 26 (faces, edges and corners)
throughout hccrad, so "the largest tumor" means the same in the generator, the post-processing and the
features.

Components, hole filling and distances go through SimpleITK (connected components, Maurer's distance map), which
the features stage loads anyway: ``scipy.ndimage`` alone would add about 0.18 s of CPU and 13 MB to every
``hccrad features`` run (bench/start_bench.py; its array-API layer imports numpy.f2py and numpy.testing).
tests/test_masks_itk.py compares every helper with ``scipy.ndimage``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import SimpleITK as sitk

LABEL_BACKGROUND, LABEL_LIVER, LABEL_TUMOR, LABEL_PORTAL_VEIN = 0, 1, 2, 3
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def label_components(mask: np.ndarray, fully_connected: bool = True) -> tuple[np.ndarray, int]:
    """The connected components of a boolean 2D or 3D ``mask`` (SimpleITK's ConnectedComponent, one thread):
    (labels, count), labels (uint32, the mask's shape) 0 outside and 1..count numbered in raster order of each
    component's first voxel, as ``scipy.ndimage.label`` numbers them. ``fully_connected``: 26 neighbours (8 in
    2D); else the 6 (4) that share a face."""
    labeller = sitk.ConnectedComponentImageFilter()
    labeller.SetFullyConnected(fully_connected)
    labeller.SetNumberOfThreads(1)  # the boxes are small: threads cost more CPU than they save
    labelled = labeller.Execute(sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8)))
    return sitk.GetArrayFromImage(labelled), int(labeller.GetObjectCount())


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label the 26-connected components of ``mask``; return (labels, voxel count of each, largest first)."""
    components, count = label_components(mask)
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    return components, np.sort(sizes)[::-1]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (an empty mask stays empty).

    Components are labelled on the mask's bounding box only, so a small region of a large image costs little.
    """
    largest = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return largest
    components, count = label_components(mask[box])
    if count <= 1:
        largest[box] = mask[box]
        return largest
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest[box] = components == int(np.argmax(sizes))
    return largest


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every true voxel of ``mask``; None when it has none."""
    extent = []
    for axis in range(mask.ndim):
        occupied = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if occupied.size == 0:
            return None
        extent.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(extent)


#: Voxels of a label map compared at a time by :func:`label_box` (a few MB of booleans, whatever the CT's size).
LABEL_BOX_CHUNK_VOXELS = 1 << 22


def label_box(labels: np.ndarray, values: tuple[int, ...]) -> tuple[slice, ...] | None:
    """:func:`bounding_box` of the voxels whose label is one of ``values``, found slab by slab along the first axis so
    that no full-size boolean array is made (on a 512 x 512 x 400 CT each would be 105 MB)."""
    plane = int(np.prod(labels.shape[1:])) or 1
    step = max(1, LABEL_BOX_CHUNK_VOXELS // plane)
    occupied = [np.zeros(n, dtype=bool) for n in labels.shape]
    for start in range(0, labels.shape[0], step):
        part = labels[start:start + step]
        slab = part == values[0]
        for value in values[1:]:
            slab |= part == value
        for axis in range(labels.ndim):
            along = np.any(slab, axis=tuple(a for a in range(labels.ndim) if a != axis))
            if axis == 0:
                occupied[0][start:start + step] = along
            else:
                occupied[axis] |= along
    extent = []
    for along in occupied:
        indices = np.flatnonzero(along)
        if indices.size == 0:
            return None
        extent.append(slice(int(indices[0]), int(indices[-1]) + 1))
    return tuple(extent)


def tumor_mask(labels: np.ndarray) -> np.ndarray:
    """``Tumor``: the largest 26-connected component of label 2 (labelled on label 2's bounding box)."""
    tumor = np.zeros(labels.shape, dtype=bool)
    box = label_box(labels, (LABEL_TUMOR,))
    if box is not None:
        tumor[box] = largest_component(labels[box] == LABEL_TUMOR)
    return tumor


def intrahepatic_portal_vein(labels: np.ndarray) -> np.ndarray:
    """Label-3 voxels enclosed by liver or tumor in their axial slice (2D hole filling).

    Intrahepatic branches are islands inside the liver's cross-section; the extrahepatic trunk at the hilum
    lies on the liver's border and is not enclosed.
    """
    enclosed = np.zeros(labels.shape, dtype=bool)
    box = label_box(labels, (LABEL_LIVER, LABEL_TUMOR))
    if box is not None:
        enclosed[box] = _enclosed_portal_vein(labels[box])
    return enclosed


def label_slices_4_connected(mask: np.ndarray) -> np.ndarray:
    """The components of a boolean (z, y, x) ``mask`` within each axial slice, 4-connected (faces in the slice;
    ``binary_fill_holes``' 2D default), none joined across slices: labels (uint32) unique over the whole array.
    One 2D labelling of the slices stacked along y with an empty row between each two (less to label than a 3D
    labelling with an empty slice between each two)."""
    n_slices, n_rows, n_columns = mask.shape
    stacked = np.zeros((n_slices, n_rows + 1, n_columns), dtype=bool)
    stacked[:, :n_rows] = mask
    components, _ = label_components(stacked.reshape(n_slices * (n_rows + 1), n_columns), fully_connected=False)
    return components.reshape(stacked.shape)[:, :n_rows]


def _enclosed_portal_vein(labels: np.ndarray) -> np.ndarray:
    """:func:`intrahepatic_portal_vein` of labels already cut to the liver's (and tumor's) bounding box: hole
    filling on that box gives the same result as on the whole slice, which is outside-connected.

    The holes are found for all slices at once: the background (neither liver nor tumor) is labelled 4-connected
    within each slice, and its components that reach the box's edge in y or x are outside; the rest are holes
    (``binary_fill_holes`` slice by slice, without its repeated dilations). Only slices holding label 3 are
    labelled."""
    portal = labels == LABEL_PORTAL_VEIN
    enclosed = np.zeros(labels.shape, dtype=bool)
    slices = np.flatnonzero(portal.any(axis=(1, 2)))
    if slices.size == 0:
        return enclosed
    part = slice(int(slices[0]), int(slices[-1]) + 1)
    local = labels[part]
    background = (local != LABEL_LIVER) & (local != LABEL_TUMOR)
    components = label_slices_4_connected(background)
    outside = _labels_on_faces(components, int(components.max()), axes=(1, 2))  # the box's edges in y and x
    outside[0] = True  # liver or tumor
    enclosed[part] = ~outside[components] & portal[part]
    return enclosed


def remnant_liver_mask(labels: np.ndarray, exclude_portal_vein: bool = False) -> np.ndarray:
    """``Rliver``: the liver without any tumor voxel.

    Label 1, plus the intrahepatic portal vein (label 3 enclosed by the liver) unless
    ``exclude_portal_vein``. No label-2 voxel is ever included, whichever tumor component it belongs to.
    Computed on the bounding box of labels 1 and 2, which holds every voxel of the result, so that a large CT
    costs one full-size array (the result) rather than several.
    """
    remnant = np.zeros(labels.shape, dtype=bool)
    box = label_box(labels, (LABEL_LIVER, LABEL_TUMOR))
    if box is None:
        return remnant
    local = labels[box]
    liver = local == LABEL_LIVER
    if not exclude_portal_vein:
        liver |= _enclosed_portal_vein(local)
    remnant[box] = liver  # tumor voxels are neither label 1 nor label 3
    return remnant


#: A portal-vein component this compact (volume at most this many times its largest inscribed ball) is not tubular.
BLOB_BALL_RATIO = 3.0
#: Portal-vein components smaller than this (mL) are too small to judge their shape.
BLOB_MIN_ML = 2.0
#: A component is "inside the liver" when at least this share of the voxels around it are liver or tumor.
ENCLOSED_SHARE = 0.9
#: A component at the liver's surface (SURFACE_SHARE or more of its border liver or tumor, less than ENCLOSED_SHARE) is
#: a lesion cut by the surface when its longest extent (Feret diameter) is at most this many times its inscribed
#: diameter: a sphere is 1, a hemisphere 2, a shallow cap of a sphere about 2.1; a vessel 2.3 diameters long reaches it.
SURFACE_FERET_RATIO = 2.5
#: ... and it is at most this many times its inscribed ball (a sphere is 1, a hemisphere 4, a shallow cap up to about
#: 6 where the liver's edge is thin): a bound on flat shapes, not the test that separates lesions from vessels.
SURFACE_BALL_RATIO = 8.0
#: The least share of a surface component's border that is liver or tumor: a vessel outside the liver touches less.
SURFACE_SHARE = 0.3


#: The most recent inscribed diameters kept by :func:`inscribed_diameter_mm` (a case's portal vein is measured twice:
#: by the label-3 checks and by the morphological factor).
INSCRIBED_DIAMETERS_KEPT = 4
_INSCRIBED_DIAMETERS: OrderedDict[tuple, float] = OrderedDict()


def inscribed_diameter_mm(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """Twice the maximum Euclidean distance transform of a boolean mask (mm), computed on the mask's bounding box
    plus one empty voxel (NaN for an empty mask). The nearest outside voxel of a voxel in the box is never farther
    than its projection on that empty border, so the distances are those of the whole image. The distance runs from
    a voxel centre to the nearest voxel centre outside the mask, so for a digitised cylinder of radius R it lies
    between R and R + one voxel.

    The same mask content on the same spacing is measured once: the last :data:`INSCRIBED_DIAMETERS_KEPT` results
    are kept, keyed by the box's shape, the spacing and a BLAKE2 digest of its voxels (a single portal-vein component
    is the whole label 3, measured again for the morphological factor; the distance transform is the stage's
    largest cost after the radiomics)."""
    box = bounding_box(mask)
    if box is None:
        return float("nan")
    local = np.ascontiguousarray(mask[box], dtype=bool)
    key = (local.shape, tuple(float(s) for s in spacing_zyx),
           hashlib.blake2b(np.packbits(local).tobytes(), digest_size=20).hexdigest())
    if key in _INSCRIBED_DIAMETERS:
        _INSCRIBED_DIAMETERS.move_to_end(key)
        return _INSCRIBED_DIAMETERS[key]
    diameter = 2.0 * largest_inside_distance_mm(np.pad(local, 1), spacing_zyx)
    _INSCRIBED_DIAMETERS[key] = diameter
    while len(_INSCRIBED_DIAMETERS) > INSCRIBED_DIAMETERS_KEPT:
        _INSCRIBED_DIAMETERS.popitem(last=False)
    return diameter


#: Relative slack on the float32 squared distances of SimpleITK's Maurer map when :func:`largest_inside_distance_mm`
#: picks the voxels to measure exactly (float32 rounding is about 1e-7; the map matched SciPy's to 1e-6).
MAURER_SLACK = 1e-4


def _or_shifted(target: np.ndarray, source: np.ndarray, axis: int) -> None:
    """``target |= source`` shifted by one voxel either way along ``axis``, in place (nothing from beyond the
    array)."""
    target_along, source_along = np.moveaxis(target, axis, 0), np.moveaxis(source, axis, 0)
    target_along[1:] |= source_along[:-1]
    target_along[:-1] |= source_along[1:]


def _labels_on_faces(components: np.ndarray, count: int, axes: tuple[int, ...]) -> np.ndarray:
    """(count + 1,) booleans: which labels of ``components`` reach the array's first or last plane along ``axes``
    (label 0 included when it does)."""
    reached = np.zeros(count + 1, dtype=bool)
    for axis in axes:
        along = np.moveaxis(components, axis, 0)
        reached[along[0]] = True
        reached[along[-1]] = True
    return reached


def face_neighbours(mask: np.ndarray) -> np.ndarray:
    """The voxels outside a boolean ``mask`` that share a face with one of its voxels."""
    grown = mask.copy()
    for axis in range(mask.ndim):
        _or_shifted(grown, mask, axis)
    return grown & ~mask


def largest_inside_distance_mm(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """The largest distance (mm) from a voxel centre of a boolean 3D ``mask`` to the nearest voxel centre outside it:
    the maximum of ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing_zyx)``, computed as SciPy does in
    float64 (``sqrt((dz sz)^2 + (dy sy)^2 + (dx sx)^2)``). The mask must have a voxel outside it (NaN if none).

    SimpleITK's Maurer distance map of the outside (exact, in float32) ranks the voxels; those within
    :data:`MAURER_SLACK` of the largest are measured in float64 against the outside voxels that share a face with
    the mask, from the farthest down, until none left can be farther. The nearest outside voxel of a voxel always
    shares a face with the mask: one step from it toward the voxel, along an axis where they differ, is nearer
    still, so it is in the mask.
    """
    if mask.all():
        return float("nan")
    outside = sitk.GetImageFromArray((~mask).astype(np.uint8))
    outside.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    mapper = sitk.SignedMaurerDistanceMapImageFilter()
    mapper.SetInsideIsPositive(False)  # positive away from the outside: inside the mask
    mapper.SetSquaredDistance(True)
    mapper.SetUseImageSpacing(True)
    mapper.SetNumberOfThreads(1)
    squared = sitk.GetArrayFromImage(mapper.Execute(outside)).ravel()
    inside = np.flatnonzero(mask.ravel())
    if inside.size == 0:
        return 0.0
    ranked = squared[inside]
    keep = ranked >= ranked.max() * (1.0 - 2.0 * MAURER_SLACK)  # squared distances: twice the slack
    candidates, bounds = inside[keep], ranked[keep].astype(np.float64) * (1.0 + 2.0 * MAURER_SLACK)
    order = np.argsort(bounds)[::-1]
    shell = np.argwhere(face_neighbours(mask))
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    best = -1.0
    for index in order:
        if bounds[index] < best:
            break
        point = np.array(np.unravel_index(candidates[index], mask.shape))
        offsets = (shell - point).astype(np.float64) * spacing
        offsets *= offsets
        best = max(best, float((offsets[:, 0] + offsets[:, 1] + offsets[:, 2]).min()))
    return float(np.sqrt(best))


def _component_shape(component: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[float, float]:
    """(largest inscribed diameter in mm, volume / volume of that inscribed ball) of one boolean component."""
    diameter = inscribed_diameter_mm(component, spacing_zyx)
    volume = float(np.count_nonzero(component)) * float(np.prod(spacing_zyx))
    ball = np.pi / 6.0 * diameter ** 3
    return diameter, volume / ball if ball > 0 else np.inf


def _line_end_keys(component: np.ndarray, axis: int) -> np.ndarray:
    """Flat indices (sorted) of the voxels of a boolean component that are the first or last of their line along
    ``axis`` (the component's voxels sharing the other two coordinates)."""
    points = np.argwhere(np.moveaxis(component, axis, -1))  # sorted by line, then along it
    change = np.any(points[1:, :-1] != points[:-1, :-1], axis=1)
    ends = np.ones(len(points), bool)
    ends[1:-1] = change[:-1] | change[1:]
    coordinates = list(points[ends].T)
    coordinates.insert(axis, coordinates.pop())
    return np.sort(np.ravel_multi_index(tuple(coordinates), component.shape))


def _feret_diameter_mm(component: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """The largest distance (mm) between two voxel centres of a boolean component, exactly.

    The farthest pair is a pair of extreme points, and an extreme point is an end of its line along each axis, so
    only voxels that end their line along z, y and x at once are compared. Of those, a voxel whose distance to
    the centroid plus the largest such distance falls short of a pair already found cannot be in the farthest
    pair either.
    """
    keys = _line_end_keys(component, 0)
    for axis in (1, 2):
        keys = np.intersect1d(keys, _line_end_keys(component, axis), assume_unique=True)
    points = np.stack(np.unravel_index(keys, component.shape), axis=1) * np.asarray(spacing_zyx, dtype=float)
    if len(points) < 2:
        return 0.0
    radii = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1))
    far = points[np.argmax(radii)]
    found = float(np.sqrt(((points - far) ** 2).sum(axis=1).max()))
    points = points[radii + radii.max() >= found * (1.0 - 1e-9)]  # the slack keeps ties despite rounding
    largest = 0.0
    for start in range(0, len(points), 256):  # pairwise in blocks: bounded memory
        differences = points[start:start + 256, None, :] - points[None, :, :]
        largest = max(largest, float((differences ** 2).sum(axis=-1).max()))
    return float(np.sqrt(largest))


def dilated_26(mask: np.ndarray) -> np.ndarray:
    """A boolean mask grown by its 26 neighbours (``binary_dilation`` with the 3 x 3 x 3 cube, nothing from beyond
    the array): the cube is three segments of 3, one per axis, so three shifts along each axis in turn."""
    grown = mask.copy()
    for axis in range(mask.ndim):
        _or_shifted(grown, grown.copy(), axis)
    return grown


def _enclosed_share(component: np.ndarray, labels: np.ndarray) -> float:
    """Share of the voxels bordering ``component`` (26-neighbours outside it) that are liver or tumor."""
    box = bounding_box(component)
    grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
    local = component[grown]
    shell = dilated_26(local) & ~local
    around = labels[grown][shell]
    return float(np.isin(around, (LABEL_LIVER, LABEL_TUMOR)).mean()) if around.size else 0.0


def component_boxes(components: np.ndarray, numbers: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """The bounding box (one slice per axis, as ``scipy.ndimage.find_objects`` gives it) of each label in
    ``numbers`` of a (z, y, x) label array; SimpleITK's label statistics, one pass."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.SetNumberOfThreads(1)
    statistics.Execute(sitk.GetImageFromArray(np.ascontiguousarray(components, dtype=np.uint32)))
    boxes = {}
    for number in numbers:
        box = statistics.GetBoundingBox(int(number))  # x, y, z starts, then sizes
        boxes[int(number)] = tuple(slice(box[axis], box[axis] + box[axis + 3]) for axis in (2, 1, 0))
    return boxes


def portal_vein_problems(labels: np.ndarray, spacing_zyx: tuple[float, float, float], max_diameter_mm: float,
                         convention: str = "liver [1], tumor [2], portal vein [3]") -> list[str]:
    """Errors when label 3 does not look like a portal vein: wider than ``max_diameter_mm`` (largest inscribed
    diameter of any component), or a compact component (volume at most :data:`BLOB_BALL_RATIO` times its inscribed
    ball, of at least :data:`BLOB_MIN_ML`) closed inside the liver (:data:`ENCLOSED_SHARE` of its border liver or
    tumor), which is what a second tumor given label 3 looks like; or a compact component at the liver's surface
    (:data:`SURFACE_SHARE` to :data:`ENCLOSED_SHARE` of its border liver or tumor, at most
    :data:`SURFACE_FERET_RATIO` inscribed diameters long and :data:`SURFACE_BALL_RATIO` inscribed balls), a
    subcapsular lesion given label 3: a sphere cut by the liver's surface is at most about 2 diameters long, a
    vessel is a tube several diameters long (the real portal veins of the tests are 4 and 9). Each names the numbers
    and the fix."""
    box = label_box(labels, (LABEL_PORTAL_VEIN,))  # slab by slab: no full-size comparison array
    if box is None:
        return []
    # everything below needs only label 3's box, grown by the one voxel of a component's border
    grown = tuple(slice(max(0, part.start - 1), part.stop + 1) for part in box)
    labels = labels[grown]
    portal = labels == LABEL_PORTAL_VEIN
    components, count = label_components(portal)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    fix = ("if label 3 is a second tumor, map it as one: masks: {labels: {tumor: [2, 3], portal_vein: []}}; if it is "
           "the portal vein, raise masks: portal_vein_max_diameter_mm")
    problems = []
    sizes = np.bincount(components.ravel())[1:]
    largest = np.argsort(sizes)[::-1][:20] + 1  # the 20 largest components are enough to judge
    boxes = component_boxes(components, largest)
    for number in largest:
        near = tuple(slice(max(0, part.start - 1), part.stop + 1) for part in boxes[int(number)])
        component = components[near] == number
        volume_ml = float(sizes[number - 1]) * voxel_ml
        diameter, ball_ratio = _component_shape(component, spacing_zyx)
        where = f"a portal-vein (label 3) component of {volume_ml:.1f} mL"
        if diameter > max_diameter_mm:
            problems.append(f"{where} is {diameter:.1f} mm wide (largest inscribed diameter), above the plausible "
                            f"{max_diameter_mm:g} mm")
            continue
        if volume_ml < BLOB_MIN_ML or ball_ratio > SURFACE_BALL_RATIO:
            continue
        share = _enclosed_share(component, labels[near])
        if share >= ENCLOSED_SHARE and ball_ratio <= BLOB_BALL_RATIO:
            problems.append(f"{where} is a closed blob inside the liver ({diameter:.1f} mm wide, {ball_ratio:.1f} "
                            "times its inscribed ball), not a vessel")
        elif SURFACE_SHARE <= share < ENCLOSED_SHARE:
            feret = _feret_diameter_mm(component, spacing_zyx)
            if feret <= SURFACE_FERET_RATIO * diameter:
                problems.append(f"{where} is a compact lesion at the liver's surface ({diameter:.1f} mm wide, "
                                f"{feret:.1f} mm long, {ball_ratio:.1f} times its inscribed ball, {share:.0%} of its "
                                "border liver or tumor), not a vessel")
    if problems:
        return [f"{'; '.join(problems)}; convention {convention}; {fix}"]
    return []


def enclosed_holes_ml(region: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """Volume (mL) of the cavities of a boolean region: voxels not in it that it encloses in 3D."""
    box = bounding_box(region)
    if box is None:
        return 0.0
    local = region[box]
    background, count = label_components(~local, fully_connected=False)  # binary_fill_holes' 6-connectivity
    outside = _labels_on_faces(background, count, axes=tuple(range(local.ndim)))
    outside[0] = True  # the region itself
    holes = ~outside[background]
    return float(np.count_nonzero(holes)) * float(np.prod(spacing_zyx)) / 1000.0
