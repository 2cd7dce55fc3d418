// swift-tools-version:5.9
// The vcsdk Swift package: the generated UniFFI bindings (Sources/VcSdk) over libvcsdk, shipped as
// an XCFramework (vcsdkFFI.xcframework, built by build-xcframework.sh on a Mac) holding the static
// library for each Apple platform with the C header and module map of Sources/vcsdkFFI/include.
import PackageDescription

let package = Package(
    name: "VcSdk",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "VcSdk", targets: ["VcSdk"]),
    ],
    targets: [
        .binaryTarget(name: "vcsdkFFI", path: "vcsdkFFI.xcframework"),
        .target(name: "VcSdk", dependencies: ["vcsdkFFI"], path: "Sources/VcSdk"),
    ]
)
